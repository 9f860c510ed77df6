"""Agreement on a project's labels: which labels count, per round and guideline version.

Adjudicators' decisions are left out: they are rulings on contested items, not independent labels.
"""

from __future__ import annotations

from typing import Any

from loop.labels.aggregation import aggregate, annotator_reliability
from loop.labels.agreement import agreement_report
from loop.errors import ConfigError
from loop.services.store import Store

DEFAULT_METHOD = "majority"


def project_records(store: Store, p: int, *, round_id: int | None = None,
                    guideline_version: int | None = None) -> list[dict[str, Any]]:
    adjudication = store.adjudication(p)
    items = None
    if round_id is not None:
        if store.round(p, round_id) is None:
            raise ConfigError(f"round {round_id} does not exist; `loop status` lists the rounds")
        items = set(store.round_assignments(p, round_id))
    out = []
    for a in store.annotations(p).values():
        if a["label"] is None or (items is not None and a["item_id"] not in items):
            continue
        if guideline_version is not None and a.get("guideline_version") != guideline_version:
            continue
        if (adjudication.get(a["item_id"]) or {}).get("adjudicator") == a["annotator"]:
            continue
        out.append(a)
    return out


def full_report(records: list[dict[str, Any]], method: str = DEFAULT_METHOD, min_items: int = 20) -> dict[str, Any]:
    """Agreement figures plus each annotator's agreement with the consensus and estimated accuracy."""
    report = agreement_report(records, min_items=min_items)
    consensus = aggregate(records, method=method) if records else {}
    report["annotators"] = annotator_reliability(records, consensus) if records else {}
    report["consensus_method"] = method
    return report
