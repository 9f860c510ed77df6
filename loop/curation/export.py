"""The curated dataset of `loop export`: its rows, the train/test split by duplicate cluster, and the
writers (JSONL, CSV, Parquet, a Hugging Face folder). `workflows.curate` gathers a project's inputs.

One row per labelled item: the label the loop trains on (the project's training policy,
`labels.policy`: by default majority vote, Dawid-Skene breaking ties, an adjudicator's ruling
final), how it was decided, how many
annotators labelled it, the guideline version of the labels that decided it, and the round the
item was selected in. The split keeps every duplicate cluster (identical normalised inputs and
near-duplicates by embedding) on one side, so a test score is never inflated by a copy of a
training example. Every file is written whole or not at all.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from loop.errors import ConfigError, DataError
from loop.labels.policy import TrainingPolicy

FORMATS = ("jsonl", "csv", "parquet", "hf")
EXTENSIONS = {"jsonl": ".jsonl", "csv": ".csv", "parquet": ".parquet"}
COLUMNS = ("id", "text", "label", "decided_by", "confidence", "n_labels", "guideline_version", "round")
HF_FOLDER = "dataset"
HF_HINT = "pip install 'loop-al[hf]'"


# --------------------------------------------------------------------------------------------
# Rows


def _order(rec: Mapping) -> tuple[str, str]:
    # The order loop.labels.aggregation.labels_by_item uses: creation time, then annotation id.
    return rec.get("created_at") or "", str(rec.get("id", ""))


def _newest_common(versions: Iterable[Any]) -> Any:
    """The most common guideline version; a tie goes to the newest. None only when none is known."""
    counts = Counter(v for v in versions if v is not None)
    if not counts:
        return None
    top = max(counts.values())
    tied = [v for v, n in counts.items() if n == top]
    # Versions are integers; anything else sorts below them, by its text.
    return max(tied, key=lambda v: (isinstance(v, int), v if isinstance(v, int) else str(v)))


def curated_rows(texts: Mapping[str, str], annotations: Iterable[dict], adjudication: Mapping[str, dict],
                 assigned: Mapping[str, int], *, policy: TrainingPolicy = TrainingPolicy(),
                 with_annotations: bool = False) -> list[dict]:
    """One row per labelled item, sorted by id: id, text, label, decided_by, confidence, n_labels,
    guideline_version, round (and "annotations" with `with_annotations`).

    The label and decided_by are exactly what training uses (the project's training `policy`:
    its aggregation over the labels it counts, the adjudicator's latest label final). n_labels counts the
    annotators who voted, leaving out the adjudicator's ruling (as the contested queue and the
    agreement figures do). guideline_version is that of the labels that decided the item: the
    adjudicator's for an adjudicated item, else the labels equal to the final one; the most common,
    a tie to the newest. round is None for an item labelled outside any round. "annotations" lists
    every raw label in creation order (also those of a guideline version the policy leaves out),
    the adjudicator's flagged.
    """
    annotations = list(annotations)
    usable = policy.counted(annotations)
    aggregated = policy.decisions(usable, dict(adjudication))
    missing = [item for item in aggregated if item not in texts]
    if missing:
        raise DataError(f"{len(missing)} labelled items have no text (e.g. {min(missing)!r}); the data "
                        "file and Label Studio must hold every labelled item")
    latest: dict[tuple[str, str], dict] = {}
    for rec in sorted(usable, key=_order):
        latest[(rec["item_id"], rec["annotator"])] = rec  # an annotator's latest label counts, as in aggregate
    raw: dict[str, list[dict]] = {}  # every label, also those the policy leaves out (another guideline version)
    for rec in sorted((a for a in annotations if a.get("label") is not None), key=_order):
        raw.setdefault(rec["item_id"], []).append(rec)
    by_item: dict[str, list[dict]] = {}
    for (item, _), rec in latest.items():
        by_item.setdefault(item, []).append(rec)

    rows = []
    for item in sorted(aggregated, key=str):
        dec = aggregated[item]
        judge = (adjudication.get(item) or {}).get("adjudicator")
        votes = [r for r in by_item.get(item, []) if r["annotator"] != judge]
        if dec["decided_by"] == "adjudicated":
            deciding = [r for r in by_item.get(item, []) if r["annotator"] == judge]
        else:
            deciding = [r for r in votes if r["label"] == dec["label"]]
        row = {
            "id": str(item), "text": texts[item], "label": dec["label"], "decided_by": dec["decided_by"],
            "confidence": float(dec["confidence"]), "n_labels": len(votes),
            "guideline_version": _newest_common(r.get("guideline_version") for r in deciding),
            "round": assigned.get(item),
        }
        if with_annotations:
            row["annotations"] = [{"annotator": str(r["annotator"]), "label": r["label"],
                                   "guideline_version": r.get("guideline_version"),
                                   "created_at": None if r.get("created_at") is None else str(r["created_at"]),
                                   "adjudicator": r["annotator"] == judge}
                                  for r in raw.get(item, [])]
        rows.append(row)
    return rows


def gold_rows(texts: Mapping[str, str], gold: Mapping[str, Mapping], assigned: Mapping[str, int], *,
              with_annotations: bool = False) -> list[dict]:
    """One row per gold item, sorted by id, with the columns of `curated_rows`: its trusted label,
    decided_by "gold", confidence 1.0, n_labels 0 (no annotator's label decided it), no guideline
    version, and the round that selected it, if any."""
    missing = [item for item in gold if item not in texts]
    if missing:
        raise DataError(f"{len(missing)} gold items have no text (e.g. {min(missing)!r}); re-run `loop gold add` "
                        "with the file that holds them")
    rows = []
    for item in sorted(gold, key=str):
        row = {"id": str(item), "text": texts[item], "label": gold[item]["label"], "decided_by": "gold",
               "confidence": 1.0, "n_labels": 0, "guideline_version": None, "round": assigned.get(item)}
        if with_annotations:
            row["annotations"] = []
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# The split


def check_test_size(test_size: Any) -> float:
    """The test share as a float strictly between 0 and 1, or a ConfigError saying so."""
    if isinstance(test_size, bool) or not isinstance(test_size, (int, float)) or not math.isfinite(test_size) \
            or not 0 < test_size < 1:
        raise ConfigError(f"--test-size is {test_size!r}; it must be a fraction strictly between 0 and 1, "
                          "e.g. 0.2 for a fifth of the items in the test split")
    return float(test_size)


def split_by_cluster(rows: Sequence[dict], clusters: Sequence[int], *, test_size: float = 0.2,
                     seed: int = 0) -> tuple[list, list]:
    """(train rows, test rows), input order kept, with no cluster on both sides.

    Stratified by label with scikit-learn's StratifiedGroupKFold (shuffled with `seed`): the test
    split is one fold of k = round(1 / test_size) (above 0.5, all folds but one), so its share
    comes in steps of 1/k, and a class with fewer clusters than folds cannot be in every fold.
    With fewer clusters than folds, or when no class has as many items as there are folds (which
    StratifiedGroupKFold refuses), GroupShuffleSplit draws `test_size` of the clusters instead.
    Both are reproducible for a seed.
    """
    test_size = check_test_size(test_size)
    if len(clusters) != len(rows):
        raise ValueError(f"split_by_cluster got {len(rows)} rows but {len(clusters)} cluster ids")
    n_groups = len(set(clusters))
    if n_groups < 2:
        raise DataError(f"cannot split {len(rows)} rows into train and test: they form {n_groups} duplicate "
                        "cluster(s), and a cluster never straddles the split; label more distinct items")
    from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

    labels = [str(r["label"]) for r in rows]
    index = list(range(len(rows)))
    small = test_size <= 0.5
    k = max(2, round(1 / (test_size if small else 1 - test_size)))
    if k <= n_groups and max(Counter(labels).values()) >= k:
        folds = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        with warnings.catch_warnings():  # "the least populated class has only n members": expected on small sets
            warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
            fold_train, fold_test = next(folds.split(index, labels, groups=list(clusters)))
        train_idx, test_idx = (fold_train, fold_test) if small else (fold_test, fold_train)
    else:
        try:
            shuffle = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
            train_idx, test_idx = next(shuffle.split(index, labels, groups=list(clusters)))
        except ValueError as exc:  # too few clusters for this share: scikit-learn says which side is empty
            raise DataError(f"cannot split {n_groups} duplicate clusters with --test-size {test_size}: {exc}; "
                            "choose a test size that leaves clusters on both sides") from None
    if len(train_idx) == 0 or len(test_idx) == 0:
        raise DataError(f"the split of {n_groups} duplicate clusters with --test-size {test_size} left one side "
                        "empty; choose another test size or label more distinct items")
    return [rows[i] for i in sorted(train_idx)], [rows[i] for i in sorted(test_idx)]


# --------------------------------------------------------------------------------------------
# Writing


def _columns(rows: Sequence[Mapping]) -> list[str]:
    return list(COLUMNS) + (["annotations"] if any("annotations" in r for r in rows) else [])


def _arrow_schema(with_annotations: bool):
    import pyarrow as pa

    fields = [("id", pa.string()), ("text", pa.string()), ("label", pa.string()), ("decided_by", pa.string()),
              ("confidence", pa.float64()), ("n_labels", pa.int64()), ("guideline_version", pa.int64()),
              ("round", pa.int64())]
    if with_annotations:
        fields.append(("annotations", pa.list_(pa.struct([
            ("annotator", pa.string()), ("label", pa.string()), ("guideline_version", pa.int64()),
            ("created_at", pa.string()), ("adjudicator", pa.bool_())]))))
    return pa.schema(fields)


def _table(rows: Sequence[Mapping], with_annotations: bool):
    import pyarrow as pa

    schema = _arrow_schema(with_annotations)
    columns = [f.name for f in schema]
    try:
        return pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows], schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataError(f"the rows do not fit the export schema ({exc}); guideline versions and rounds must be "
                        "integers") from None


def write_rows(path: str | Path, rows: Sequence[Mapping], fmt: str) -> Path:
    """Write rows as JSONL, CSV or Parquet, whole or not at all (a temporary file, then os.replace).

    Columns: COLUMNS, plus "annotations" when the rows carry it (a list of dicts; in CSV one JSON
    string per cell). In CSV a None is an empty cell.
    """
    if fmt not in EXTENSIONS:
        hint = "; a Hugging Face folder is written by write_hf" if fmt == "hf" else ""
        raise ConfigError(f"unknown file format {fmt!r}; use one of: {', '.join(EXTENSIONS)}{hint}")
    path = Path(path)
    if not path.parent.is_dir():
        raise DataError(f"{path}: the folder {path.parent} does not exist; create it first")
    columns = _columns(rows)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if fmt == "jsonl":
            with tmp.open("w", encoding="utf-8") as fh:
                for row in rows:
                    fh.write(json.dumps({c: row.get(c) for c in columns}, ensure_ascii=False) + "\n")
        elif fmt == "csv":
            with tmp.open("w", encoding="utf-8", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=columns)
                writer.writeheader()
                for row in rows:
                    out = {c: row.get(c) for c in columns}
                    if "annotations" in out:
                        out["annotations"] = json.dumps(out["annotations"] or [], ensure_ascii=False)
                    writer.writerow(out)
        else:
            import pyarrow.parquet as pq

            pq.write_table(_table(rows, "annotations" in columns), tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_hf(folder: str | Path, splits: Mapping[str, Sequence[Mapping]]) -> Path:
    """A Hugging Face `datasets.DatasetDict` saved with save_to_disk (load it with
    `datasets.load_from_disk`); every split has the same features. Whole or not at all: written
    beside the folder, then moved into place."""
    try:
        import datasets
    except ImportError:
        raise ConfigError(f"the Hugging Face format needs the `datasets` package; install it with {HF_HINT}, "
                          "or export --format jsonl, csv or parquet") from None
    folder = Path(folder)
    if not folder.parent.is_dir():
        raise DataError(f"{folder}: the folder {folder.parent} does not exist; create it first")
    with_annotations = any("annotations" in r for rows in splits.values() for r in rows)
    features = datasets.Features.from_arrow_schema(_arrow_schema(with_annotations))
    datasets.disable_progress_bars()  # the CLI shows its own progress
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    old = folder.with_name(f".{folder.name}.{os.getpid()}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        columns = list(features)
        dd = datasets.DatasetDict({name: datasets.Dataset.from_list([{c: r.get(c) for c in columns} for r in rows],
                                                                    features=features)
                                   for name, rows in splits.items()})
        dd.save_to_disk(str(tmp))
        if folder.exists():
            folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not folder.exists():
            old.rename(folder)
        raise
    return folder


def _write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
