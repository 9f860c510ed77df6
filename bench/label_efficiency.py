"""Label efficiency of each strategy on real data: `loop simulate` on banking77 and trec.

    .venv/bin/python -m bench.label_efficiency --dataset trec --strategy margin-diverse,margin,random

Reads ../shared/data/<dataset>/{train,test}.jsonl (train = pool, test = held out), embeds them once
into the workspace cache, runs the simulation and writes docs/bench/<dataset>.json and .png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from loop.core.dataset import read_items
from loop.core.embeddings import Embedder, embed_texts
from loop.core.stopping import StabilizingPredictions
from loop.services.vectors import EmbeddingCache
from loop.workflows.simulate import SimConfig, plot, simulate

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def embedded(dataset: str) -> tuple:
    """(X, y, X_test, y_test) of ../shared/data/<dataset>: train is the pool, test the held-out set,
    embedded once into the repository's cache."""
    folder = DATA / dataset
    train = read_items(folder / "train.jsonl", label_field="label")
    test = read_items(folder / "test.jsonl", label_field="label")
    cache, embedder = EmbeddingCache(REPO / ".loop" / "embeddings.sqlite"), Embedder()
    X, _ = embed_texts([i.text for i in train], cache, embedder)
    X_test, _ = embed_texts([i.text for i in test], cache, embedder)
    return X, [i.label for i in train], X_test, [i.label for i in test]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="trec")
    ap.add_argument("--strategy", default="margin-diverse,margin,random")
    ap.add_argument("--batch", type=int, default=25)
    ap.add_argument("--budget", type=int, default=2000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--annotators", type=int, default=1)
    ap.add_argument("--overlap", type=int, default=1)
    ap.add_argument("--annotator-error", default="0")
    ap.add_argument("--out", default=str(REPO / "docs" / "bench"))
    ap.add_argument("--classifier", choices=["logreg", "sgd"], default="logreg",
                    help="Benchmark-only: swap loop's classifier for an SGD log-loss model to compare them.")
    args = ap.parse_args()
    suffix = ""
    if args.classifier == "sgd":
        from sklearn.linear_model import SGDClassifier

        from loop.core import model as model_lib

        model_lib.new_classifier = lambda seed=0: SGDClassifier(loss="log_loss", alpha=1e-4, max_iter=50,
                                                                tol=1e-3, random_state=seed)
        suffix = "-sgd"

    X, y, X_test, y_test = embedded(args.dataset)
    cfg = SimConfig(strategies=args.strategy.split(","), batch=args.batch, budget=args.budget, seeds=args.seeds,
                    annotators=args.annotators, overlap=args.overlap,
                    annotator_error=[float(e) for e in args.annotator_error.split(",")],
                    stop_rule=StabilizingPredictions())
    start = time.perf_counter()
    result = simulate(X, y, X_test, y_test, cfg)
    result["seconds"] = round(time.perf_counter() - start, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.dataset}{suffix}.json").write_text(json.dumps(result, indent=1))
    plot(result, str(out / f"{args.dataset}{suffix}.png"), title=f"{args.dataset}{suffix}: test accuracy vs labels")
    print(f"full-data accuracy {result['full_data_accuracy']:.3f}  ({result['seconds']} s)")
    for name, e in result["strategies"].items():
        print(f"{name:>16}: 95% at {e['labels_to_95']} (x{e.get('labels_to_95_ratio_to_random')}), "
              f"98% at {e['labels_to_98']} (x{e.get('labels_to_98_ratio_to_random')}); "
              f"stop fired {e['stop']['fired']}/{e['stop']['of']} at {e['stop']['labels_mean']} labels, "
              f"accuracy {e['stop']['accuracy_mean']}")


if __name__ == "__main__":
    main()
