"""Embedding engines against PyTorch fp32 (issue 16, part 1): speed, agreement, label efficiency.

    nice -n 10 .venv/bin/python -m bench.embedding_speed                   # 3,000 texts, 3 seeds
    nice -n 10 .venv/bin/python -m bench.embedding_speed --texts 1000 --seeds 0   # speed only
    nice -n 10 .venv/bin/python -m bench.embedding_speed --texts 0 --out docs/bench/embedding-engines-clean.json \\
        --simulate-args "--annotators 1 --overlap 1 --annotator-error 0"      # labels only, no label noise

1. speed      `--texts` texts: the first half of them from ../shared/data/trec/train.jsonl, the rest
              from banking77's (first lines of each), cut into `--rounds` chunks. Each engine (`torch`,
              `onnx`, `onnx-int8`, built by `loop.services.onnx_model.embedder` as LOOP_EMBEDDING_BACKEND
              would) is loaded
              and warmed up first (load and a first ONNX export timed apart), then every chunk is
              embedded by every engine in turn, the order rotated per chunk, so load from other
              processes on the machine falls on all engines alike. items/s = texts / seconds in
              `Embedder.encode`; the speed-up of each chunk is reported too (its spread shows the noise).
2. agreement  cosine of each text's vector against PyTorch fp32's: mean and minimum.
3. labels     `loop simulate` (the CLI, as a subprocess, on a copy of loop/ taken when this part
              starts, so every engine runs the same code while the working tree changes) on trec,
              train as the pool and test held out,
              with `--strategy` (default: the default strategy), `--simulate-args` and otherwise its
              defaults (3 annotators at 5/10/30% error, 2 per item), `--seeds` seeds,
              once per engine (LOOP_EMBEDDING_BACKEND); full-data accuracy, labels to 98% of it and
              the AUC (mean test accuracy over the budget), mean and per seed, and their difference
              to PyTorch's. Same seeds, so each seed faces the same simulated crowd on every engine.

Vectors go through the workspace's embedding cache (`--workspace`, default ./.loop) only in part 3;
the ONNX files are exported into its models/ folder once. Writes `--out` (JSON) and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from loop.core.embeddings import BACKENDS

ENGINES = ("torch", "onnx", "onnx-int8")  # the reference first
assert sorted(ENGINES) == sorted(BACKENDS), BACKENDS
REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def sample_texts(n: int) -> list[str]:
    texts = []
    for dataset, k in (("trec", n // 2), ("banking77", n - n // 2)):
        with open(DATA / dataset / "train.jsonl", encoding="utf-8") as f:
            texts += [json.loads(line)["text"] for _, line in zip(range(k), f)]
    return texts


def speed(texts: list[str], workspace: Path, rounds: int, batch_size: int) -> dict:
    from loop.services import onnx_model
    from loop.services.settings import load_settings

    engines, setup = {}, {}
    for backend in ENGINES:
        settings = load_settings(workspace=str(workspace), embedding_backend=backend)
        start = time.perf_counter()
        engines[backend] = onnx_model.embedder(settings, batch_size=batch_size)
        engines[backend].encode(texts[:batch_size])  # loads the model (exports the ONNX file if missing)
        setup[backend] = round(time.perf_counter() - start, 1)
    chunks = np.array_split(np.arange(len(texts)), rounds)
    seconds = {b: [] for b in ENGINES}
    vectors = {b: np.empty((len(texts), 384), np.float32) for b in ENGINES}
    for r, rows in enumerate(chunks):
        order = ENGINES[r % len(ENGINES):] + ENGINES[:r % len(ENGINES)]
        for backend in order:
            start = time.perf_counter()
            vectors[backend][rows] = engines[backend].encode([texts[i] for i in rows])
            seconds[backend].append(time.perf_counter() - start)
    out = {}
    for backend in ENGINES:
        cos = (vectors[backend] * vectors["torch"]).sum(axis=1)
        out[backend] = {"load_seconds": setup[backend], "seconds": round(sum(seconds[backend]), 2),
                        "items_per_s": round(len(texts) / sum(seconds[backend]), 1),
                        "speedup": round(sum(seconds["torch"]) / sum(seconds[backend]), 2),
                        "speedup_per_chunk": [round(t / s, 2) for t, s in zip(seconds["torch"], seconds[backend])],
                        "cosine_mean": round(float(cos.mean()), 5), "cosine_min": round(float(cos.min()), 5),
                        "cosine_p01": round(float(np.quantile(cos, 0.01)), 5)}
    return out


def snapshot(folder: Path) -> Path:
    """A copy of the `loop` package as it is now: every engine's `loop simulate` runs this same code,
    whatever changes in the working tree meanwhile."""
    shutil.copytree(REPO / "loop", folder / "loop", ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def simulate(backend: str, workspace: Path, seeds: int, strategy: str, extra: list[str], code: Path) -> dict:
    env = {**os.environ, "LOOP_WORKSPACE": str(workspace), "LOOP_EMBEDDING_BACKEND": backend,
           "PYTHONPATH": str(code)}
    cmd = [sys.executable, "-c", "from loop.cli.main import app; app()", "simulate", str(DATA / "trec" / "train.jsonl"),
           "--test", str(DATA / "trec" / "test.jsonl"), "--strategy", strategy, "--seeds", str(seeds), *extra, "--json"]
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"loop simulate with {backend} failed: {done.stderr.strip()[-2000:]}")
    result = json.loads(done.stdout)
    entry = result["strategies"][strategy]
    return {"seconds": round(time.perf_counter() - start, 1), "full_data_accuracy": result["full_data_accuracy"],
            "labels_to_98": entry["labels_to_98"], "labels_to_98_per_seed": entry["labels_to_98_per_seed"],
            "auc": entry["auc"], "auc_per_seed": entry["auc_per_seed"], "command": "loop " + " ".join(cmd[3:])}


def compare(runs: dict) -> dict:
    """Each engine against torch: differences of the means, and the seed-to-seed spread (std) they
    are judged against: 'within noise' when each difference is within the larger spread (labels to
    98% only where every run reached 98%)."""
    base = runs["torch"]
    out = {}
    for backend, r in runs.items():
        d98 = (None if r["labels_to_98"] is None or base["labels_to_98"] is None
               else round(r["labels_to_98"] - base["labels_to_98"], 1))
        spread98 = max(float(np.std([v for v in x["labels_to_98_per_seed"] if v is not None] or [0]))
                       for x in (r, base))
        dauc = round(r["auc"] - base["auc"], 4)
        spread_auc = max(float(np.std(x["auc_per_seed"])) for x in (r, base))
        out[backend] = {"labels_to_98_diff": d98, "labels_to_98_seed_std": round(spread98, 1),
                        "auc_diff": dauc, "auc_seed_std": round(spread_auc, 4),
                        "within_noise": (d98 is None or abs(d98) <= spread98) and abs(dauc) <= spread_auc}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3, help="Chunks the texts are cut into (engines take turns).")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seeds", type=int, default=3, help="Seeds of `loop simulate` per engine; 0: skip part 3.")
    ap.add_argument("--strategy", default="margin-diverse")
    ap.add_argument("--engines", default=",".join(ENGINES), help="Engines `loop simulate` runs with (torch first).")
    ap.add_argument("--simulate-args", default="",
                    help="More options for `loop simulate`, e.g. '--annotators 1 --overlap 1 --annotator-error 0'.")
    ap.add_argument("--workspace", default=str(REPO / ".loop"))
    ap.add_argument("--out", default=str(REPO / "docs" / "bench" / "embedding-engines.json"))
    args = ap.parse_args()
    if not (DATA / "trec").is_dir():
        raise SystemExit(f"{DATA} is absent: this benchmark reads trec and banking77 from ../shared/data")
    import torch

    workspace = Path(args.workspace).resolve()
    texts = sample_texts(args.texts)
    report = {"machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                          "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
              "texts": len(texts), "batch_size": args.batch_size}
    report["speed"] = speed(texts, workspace, args.rounds, args.batch_size) if texts else {}
    for backend, s in report["speed"].items():
        print(f"{backend:>10}: {s['items_per_s']:7.1f} items/s  x{s['speedup']:.2f} torch "
              f"(chunks {s['speedup_per_chunk']})  cosine mean {s['cosine_mean']:.4f} min {s['cosine_min']:.4f}  "
              f"(load {s['load_seconds']} s)", flush=True)
    if args.seeds:
        runs = {}
        with tempfile.TemporaryDirectory(prefix="loop-code-") as tmp:
            code = snapshot(Path(tmp))
            for backend in args.engines.split(","):
                runs[backend] = simulate(backend, workspace, args.seeds, args.strategy, args.simulate_args.split(),
                                         code)
                r = runs[backend]
                print(f"{backend:>10}: full-data {r['full_data_accuracy']:.3f}, 98% at {r['labels_to_98']} "
                      f"{r['labels_to_98_per_seed']}, AUC {r['auc']:.4f} {r['auc_per_seed']} ({r['seconds']} s)",
                      flush=True)
        report["simulate"] = runs
        report["against_torch"] = compare(runs)
        for backend, c in report["against_torch"].items():
            print(f"{backend:>10}: labels to 98% {c['labels_to_98_diff']} (seed std {c['labels_to_98_seed_std']}), "
                  f"AUC {c['auc_diff']:+.4f} (seed std {c['auc_seed_std']}): "
                  f"{'within noise' if c['within_noise'] else 'NOT within noise'}")
    report["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
