"""`loop agreement` and `loop aggregate`: agreement on a project's labels (per round and guideline
version) or on a file of labels made elsewhere, and one label per item for such a file."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from loop.errors import ConfigError
from loop.labels.aggregation import DEFAULT_METHOD, aggregate
from loop.labels.agreement import agreement_records, full_report
from loop.labels.label_files import read_label_file, write_aggregate
from loop.services.context import Context
from loop.services.store import Store
from loop.services.sync import sync_annotations
from loop.workflows.training import labels_that_count


def project_records(store: Store, p: int, *, round_id: int | None = None,
                    guideline_version: int | None = None) -> list[dict[str, Any]]:
    """The project's label records that agreement counts (`labels.agreement.agreement_records`):
    only labels that count (`workflows.training.labels_that_count`)."""
    items = None
    if round_id is not None:
        if store.round(p, round_id) is None:
            raise ConfigError(f"round {round_id} does not exist; `loop status` lists the rounds")
        items = store.round_assignments(p, round_id)
    counted, _ = labels_that_count(store, p)
    return agreement_records(counted, store.adjudication(p), items=items, guideline_version=guideline_version)


def project_agreement(ctx: Context, p: int, *, round_id: int | None = None, guideline_version: int | None = None,
                      method: str = DEFAULT_METHOD) -> dict[str, Any]:
    sync_annotations(ctx.store, ctx.ls, p)
    records = project_records(ctx.store, p, round_id=round_id, guideline_version=guideline_version)
    report = full_report(records, method=method)
    # Labels made with the model's answer shown agree with the model, and so with each other, more
    # than independent ones would (assisted labelling).
    report["labels_with_suggestion"] = sum(1 for r in records if r.get("suggested"))
    if report["labels_with_suggestion"]:
        report["warnings"].append(f"{report['labels_with_suggestion']} of {len(records)} labels were made with the "
                                  "model's answer shown: agreement is partly agreement with the model")
    return report


def file_agreement(path: str | Path, *, item_field: str = "item_id", annotator_field: str = "annotator",
                   label_field: str = "label", method: str = DEFAULT_METHOD) -> dict[str, Any]:
    return full_report(read_label_file(path, item_field, annotator_field, label_field), method=method)


def aggregate_file(path: str | Path, out: str | Path, *, method: str = DEFAULT_METHOD, item_field: str = "item_id",
                   annotator_field: str = "annotator", label_field: str = "label") -> dict[str, Any]:
    """One label per item of a label file, written to `out`; a summary of how items were decided."""
    records = read_label_file(path, item_field, annotator_field, label_field)
    result = aggregate(records, method=method)
    written = write_aggregate(out, result)
    return {"items": len(result), "method": method, "out": str(written),
            "decided_by": dict(Counter(v["decided_by"] for v in result.values())),
            "labels": dict(Counter(v["label"] for v in result.values()))}
