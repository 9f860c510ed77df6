"""`loop export`: the curated dataset, split train/test by duplicate cluster, with its data card.

One row per labelled item: the label the loop trains on (`loop.labels.adjudication.final_labels`: majority
vote, Dawid-Skene breaking ties, an adjudicator's ruling final), how it was decided, how many
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
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from loop.labels.adjudication import adjudicated_labels
from loop.labels.aggregation import DEFAULT_METHOD, aggregate
from loop.core.dataset import Item, read_items, text_key
from loop.errors import ConfigError, DataError, LoopError, NotInitialised

FORMATS = ("jsonl", "csv", "parquet", "hf")
EXTENSIONS = {"jsonl": ".jsonl", "csv": ".csv", "parquet": ".parquet"}
COLUMNS = ("id", "text", "label", "decided_by", "confidence", "n_labels", "guideline_version", "round")
ANNOTATION_FIELDS = ("annotator", "label", "guideline_version", "created_at", "adjudicator")
SPLITS = ("train", "test")
HF_FOLDER = "dataset"
HF_HINT = "pip install 'loop-al[hf]'"
VALIDATOR_STEPS = 8  # loop.curation.validate.validate reports progress once per group of checks

Progress = Callable[[str, int], Callable[[int], None]]  # (description, total) -> advance(n), as loop.workflows.project


def _no_progress(description: str, total: int) -> Callable[[int], None]:
    return lambda n: None


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
                 assigned: Mapping[str, int], *, with_annotations: bool = False) -> list[dict]:
    """One row per labelled item, sorted by id: id, text, label, decided_by, confidence, n_labels,
    guideline_version, round (and "annotations" with `with_annotations`).

    The label and decided_by are exactly what training uses (`final_labels`: the default
    aggregation over every label, the adjudicator's latest label final). n_labels counts the
    annotators who voted, leaving out the adjudicator's ruling (as the contested queue and the
    agreement figures do). guideline_version is that of the labels that decided the item: the
    adjudicator's for an adjudicated item, else the labels equal to the final one; the most common,
    a tie to the newest. round is None for an item labelled outside any round. "annotations" lists
    every raw label in creation order, the adjudicator's flagged.
    """
    usable = [a for a in annotations if a.get("label") is not None]
    decided = adjudicated_labels(usable, dict(adjudication))
    aggregated = aggregate(usable, DEFAULT_METHOD, adjudicated=decided)
    missing = [item for item in aggregated if item not in texts]
    if missing:
        raise DataError(f"{len(missing)} labelled items have no text (e.g. {min(missing)!r}); the data "
                        "file and Label Studio must hold every labelled item")
    latest: dict[tuple[str, str], dict] = {}
    raw: dict[str, list[dict]] = {}
    for rec in sorted(usable, key=_order):
        latest[(rec["item_id"], rec["annotator"])] = rec  # an annotator's latest label counts, as in aggregate
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
    With fewer clusters than folds, GroupShuffleSplit draws `test_size` of the clusters instead.
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
    if k <= n_groups:
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


# --------------------------------------------------------------------------------------------
# A project


def project_texts(ctx, p: int, project: Mapping, item_ids: Iterable[str]) -> tuple[dict[str, str], str]:
    """item id -> text for `item_ids`, and where the texts came from ("source" or "label-studio").

    The project's data file first (re-read with its text and id fields), keeping only texts whose
    content hash is the one stored at `loop init` (an edited file must not relabel other texts);
    when the file is gone, changed, or lacks items, the texts of the Label Studio tasks.
    """
    needed = set(item_ids)
    keys = {i: v.get("key") for i, v in ctx.store.items(p).items()}
    texts: dict[str, str] = {}
    why = "the project record names no data file"
    source = project.get("source")
    if source:
        try:
            for it in read_items(source, text_field=project.get("text_field") or "text",
                                 id_field=project.get("id_field")):
                if it.id in needed and keys.get(it.id) in (None, text_key(it.text)):
                    texts[it.id] = it.text
            why = f"{source} lacks them or their text changed since `loop init`"
        except DataError as exc:
            why = str(exc)
    missing = needed - set(texts)
    if not missing:
        return texts, "source"
    try:
        from_ls = ctx.ls.task_texts(p)
    except LoopError as exc:
        raise DataError(f"{len(missing)} labelled items have no text ({why}), and Label Studio could not "
                        f"supply them: {exc}") from None
    texts.update({i: from_ls[i] for i in missing if i in from_ls})
    still = sorted(needed - set(texts))
    if still:
        raise DataError(f"{len(still)} labelled items (e.g. {still[0]!r}) have no text in the data file ({why}) "
                        "nor in Label Studio's tasks; restore the data file the project was created from")
    return texts, "label-studio"


def guideline_negatives(project: Mapping) -> list[str] | None:
    """The negative labels of the guideline in force, or None (the validator's defaults)."""
    from loop.labels.guidelines import get

    folder = project.get("guidelines_dir")
    if not folder:
        return None
    try:
        g = get(folder, project.get("guideline_version"))
    except DataError:
        return None
    return list(g.negatives) or None


def export_project(ctx, p: int, out_dir: str | Path, *, fmt: str = "jsonl", test_size: float = 0.2,
                   seed: int = 0, with_annotations: bool = False, allow_contradictions: bool = False,
                   near_threshold: float | None = None, progress: Progress = _no_progress) -> dict[str, Any]:
    """Validate, split and write project p's curated dataset into out_dir with its data card.

    Files: train.<ext> and test.<ext> (or a `dataset/` folder for fmt "hf"), README.md (the data
    card), learning_curve.png and validation.json. Refuses (DataError, nothing written) while
    identical inputs carry different labels, unless allow_contradictions (the card then says so).
    """
    from loop.curation.datacard import card_facts, render_card
    from loop.core.embeddings import embed_texts
    from loop.workflows.rounds import plot_curve, status
    from loop.curation.validate import NEAR_THRESHOLD, duplicate_clusters, validate

    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; use one of: {', '.join(FORMATS)}")
    test_size = check_test_size(test_size)
    near_threshold = NEAR_THRESHOLD if near_threshold is None else near_threshold
    if not 0 < near_threshold <= 1:
        raise ConfigError(f"--near-threshold is {near_threshold}; a cosine similarity threshold is in (0, 1]")
    if fmt == "hf":
        try:
            import datasets  # noqa: F401  (fail before any work, not after it)
        except ImportError:
            raise ConfigError(f"--format hf needs the `datasets` package; install it with {HF_HINT}") from None
    store = ctx.store
    project = store.project(p)
    if project is None:
        raise NotInitialised(f"project {p} is unknown; `loop init DATA` creates one")
    annotations = list(store.annotations(p).values())
    labelled = {a["item_id"] for a in annotations if a.get("label") is not None}
    if not labelled:
        raise DataError(f"project {p} has no labels yet; nothing to export (`loop status` shows the rounds)")
    texts, text_source = project_texts(ctx, p, project, labelled)
    rows = curated_rows(texts, annotations, store.adjudication(p), store.assigned(p),
                        with_annotations=with_annotations)

    X, _ = embed_texts([r["text"] for r in rows], ctx.cache, ctx.embedder, progress=progress("embedding", len(rows)))
    items = [Item(r["id"], r["text"], r["label"]) for r in rows]
    advance = progress("validating", VALIDATOR_STEPS)
    report = validate(items, embeddings=X, labels=project.get("labels"), negatives=guideline_negatives(project),
                      near_threshold=near_threshold, seed=seed, progress=lambda check: advance(1))
    groups = report["checks"]["contradictions"].get("groups") or []
    if report["checks"]["contradictions"]["count"] and not allow_contradictions:
        shown = "; ".join(f"{g['text'][:60]!r}: " + ", ".join(f"{lab} ({', '.join(map(str, ids))})"
                                                              for lab, ids in g["labels"].items())
                          for g in groups[:3])
        more = f" and {len(groups) - 3} more" if len(groups) > 3 else ""
        raise DataError(f"{len(groups)} inputs carry different labels after normalisation: {shown}{more}. "
                        "Adjudicate or relabel them (`loop validate` lists them all), or pass "
                        "--allow-contradictions to export anyway (the data card records it)")

    # The validator's near-duplicate pairs, not a second search (it leaves out empty inputs).
    near = report["checks"]["near_duplicates"].get("pairs") or []
    clusters = duplicate_clusters(items, None, near_threshold, pairs=[(q["a"], q["b"]) for q in near])
    train, test = split_by_cluster(rows, clusters, test_size=test_size, seed=seed)
    splits = {"train": train, "test": test}

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "hf":
        written = {"dataset": str(write_hf(out / HF_FOLDER, splits))}
        data_files = {name: f"{HF_FOLDER}/{name}/*.arrow" for name in splits}
    else:
        written = {name: str(write_rows(out / f"{name}{EXTENSIONS[fmt]}", part, fmt)) for name, part in splits.items()}
        data_files = {name: f"{name}{EXTENSIONS[fmt]}" for name in splits}
    _write_text(out / "validation.json", json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n")
    st = status(ctx, p, sync=False)
    curve = out / "learning_curve.png"
    tmp_png = out / f".learning_curve.{os.getpid()}.tmp.png"
    plot_curve(st, str(tmp_png))
    os.replace(tmp_png, curve)
    settings = {"format": fmt, "test_size": test_size, "seed": seed, "near_threshold": near_threshold,
                "with_annotations": with_annotations, "text_source": text_source}
    facts = card_facts(store, p, status=st, validation=report, splits=splits, data_files=data_files,
                       n_clusters=len(set(clusters)), allow_contradictions=allow_contradictions, settings=settings,
                       learning_curve=curve.name)
    card = _write_text(out / "README.md", render_card(facts))
    written |= {"card": str(card), "learning_curve": str(curve), "validation": str(out / "validation.json")}
    return {"project_id": p, "out_dir": str(out), "format": fmt, "files": written,
            "rows": len(rows), "splits": {name: len(part) for name, part in splits.items()},
            "clusters": len(set(clusters)), "blockers": report["blockers"],
            "contradictions": len(groups), "allow_contradictions": allow_contradictions,
            "text_source": text_source, "validation_ok": report["ok"]}
