"""The ONNX engines: vectors as PyTorch's, exported once per workspace (atomically), chosen by a setting."""

from __future__ import annotations

import numpy as np
import pytest

from loop.core.embeddings import BACKENDS, MODEL_ID, Embedder, embed_texts
from loop.errors import ConfigError
from loop.services import onnx_model
from loop.services.context import Context
from loop.services.settings import Settings, load_settings

TEXTS = ["How far is it from Denver to Aspen ?", "What is the capital of Mongolia?",
         "I was charged twice for the same card payment, please refund one",
         "onnx-test " + "a very long text that the tokenizer cuts at 256 tokens " * 60, "?"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-ws")


@pytest.fixture(scope="module")
def models(workspace):
    """The workspace's models/ folder: exported into once, by the first test that needs a file."""
    return workspace / "models"


@pytest.fixture(scope="module")
def reference():
    return Embedder().encode(TEXTS)


def settings_for(workspace, backend):
    return load_settings(workspace=str(workspace), embedding_backend=backend)


# fp32: the same vectors up to rounding. int8: 0.993 mean cosine over 3,000 trec and banking77 texts
# (docs/benchmarks.md); on these five, one of them a lone "?", a little lower.
@pytest.mark.parametrize("backend, mean, floor", [("onnx", 0.9999, 0.9999), ("onnx-int8", 0.985, 0.97)])
def test_onnx_vectors_are_pytorchs(models, reference, backend, mean, floor):
    e = Embedder(batch_size=2, backend=backend, onnx_file=onnx_model.onnx_file(models, backend))
    vectors = e.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = (vectors * reference).sum(axis=1)
    assert cosines.mean() >= mean and cosines.min() >= floor, cosines


def test_an_fp32_vector_does_not_depend_on_the_texts_batched_with_it(models):
    """Padding is masked out, so a text's vector is the same alone or in any batch: every process
    (CLI, backend, trainer, Ray worker) gets the same vector for a text. (int8's does depend on its
    batch: activations are quantised with one scale per batch; why it is not the default.)"""
    e = Embedder(batch_size=3, backend="onnx", onnx_file=onnx_model.onnx_file(models, "onnx"))
    together = e.encode(TEXTS)
    alone = np.stack([e.encode([t])[0] for t in TEXTS])
    assert np.abs(together - alone).max() < 1e-5


def test_the_export_is_made_once_and_reused(models, monkeypatch):
    path = onnx_model.onnx_file(models, "onnx-int8")  # made above, or now
    stamp = path.stat().st_mtime_ns

    def no_export(*_):
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_model, "export_fp32", no_export)
    monkeypatch.setattr(onnx_model, "quantise_int8", no_export)
    assert onnx_model.onnx_file(models, "onnx-int8") == path and path.stat().st_mtime_ns == stamp
    assert onnx_model.onnx_file(models, "onnx") == models / onnx_model.file_name("onnx")
    assert Embedder(backend="onnx-int8", onnx_file=path).encode(["reused"]).shape == (1, 384)
    assert not list(models.glob(".*.tmp"))


def test_a_failed_export_leaves_no_file(tmp_path, monkeypatch):
    def half_then_crash(path):
        path.write_bytes(b"half an onnx file")
        raise RuntimeError("killed mid-export")

    monkeypatch.setattr(onnx_model, "export_fp32", half_then_crash)
    with pytest.raises(RuntimeError, match="mid-export"):
        onnx_model.onnx_file(tmp_path, "onnx")
    assert [p.name for p in tmp_path.iterdir()] == [".export.lock"]


def test_the_setting_picks_the_engine_and_its_file_beside_the_cache(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(onnx_model, "onnx_file", lambda folder, backend: calls.append((folder, backend)))
    for backend in BACKENDS:
        ctx = Context(settings_for(tmp_path / "ws", backend))
        e = ctx.embedder
        assert e.backend == backend and (e.model_id == MODEL_ID) == (backend == "torch")
        if backend != "torch":
            assert e.onnx_file.args == (ctx.workspace.embeddings.parent / "models", backend)
    assert calls == []  # nothing exported until something is embedded


def test_keys_differ_per_engine_in_one_cache(tmp_path, workspace, models):
    from loop.services.vectors import EmbeddingCache

    cache = EmbeddingCache(tmp_path / "c.sqlite")
    torch_e = Embedder()
    int8 = onnx_model.embedder(settings_for(workspace, "onnx-int8"))
    X, _ = embed_texts(["onnx-test keys per engine"], cache, torch_e)
    Y, new = embed_texts(["onnx-test keys per engine"], cache, int8)
    assert new == 1 and len(cache) == 2 and not np.array_equal(X, Y)
    assert int8.onnx_file() == models / onnx_model.file_name("onnx-int8")


def test_a_bad_setting_value_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOOP_EMBEDDING_BACKEND", "onnx_int8")
    with pytest.raises(ConfigError) as exc:
        load_settings()
    message = str(exc.value)
    assert "'onnx_int8'" in message and "$LOOP_EMBEDDING_BACKEND" in message and "'onnx-int8'" in message


def test_the_setting_offers_exactly_the_engines():
    field = Settings.__dataclass_fields__["embedding_backend"]
    assert field.metadata["choices"] == BACKENDS and field.default == BACKENDS[0] == "onnx"
    with pytest.raises(ConfigError, match="runs on PyTorch"):
        onnx_model.file_name("torch")
