"""Whose label is it, and may it count? Pure rules over label records.

Every label belongs to the person Label Studio says last wrote it (`annotator`; `created_by` is who
started it, and `edited_by_other` says the two differ). A label counts towards training,
agreement and the contested queue only when its author was sent the item: in a round's
assignments, or as the item's adjudicator, and, for a label made in an annotator's queue, only when
the author owns that queue. Anything else (an item nobody sent them, someone else's queue) is
kept, reported by `loop status`, and left out until an operator accepts it (`loop accept`).
An auditor's answers (made in an audit queue, `loop audit`) are neither: they never count and are
not "left out"; they are the audit's evidence (`audit_answers`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

AUDIT_QUEUE = "audit:"  # the queue name of audit n's Label Studio project is "audit:n"


def audit_queue(n: int) -> str:
    return f"{AUDIT_QUEUE}{n}"


def is_audit_answer(record: Mapping[str, Any]) -> bool:
    return str(record.get("queue") or "").startswith(AUDIT_QUEUE)


def audit_answers(annotations: Iterable[Mapping[str, Any]], n: int, auditor: str) -> dict[str, str]:
    """item -> the auditor's label in audit n's queue (their latest; skips and others' labels ignored)."""
    out: dict[str, tuple[str, str]] = {}
    for rec in annotations:
        if rec.get("queue") != audit_queue(n) or rec.get("annotator") != auditor or rec.get("label") is None:
            continue
        stamp = rec.get("updated_at") or rec.get("created_at") or ""
        if rec["item_id"] not in out or stamp >= out[rec["item_id"]][0]:
            out[rec["item_id"]] = (stamp, rec["label"])
    return {item: label for item, (_, label) in out.items()}


def assigned_to(round_assignments: Iterable[Mapping[str, Iterable[str]]],
                adjudication: Mapping[str, Mapping]) -> dict[str, set[str]]:
    """item -> everyone sent it: the annotators of every round that assigned it, and its adjudicator."""
    out: dict[str, set[str]] = {}
    for assignments in round_assignments:
        for item, people in assignments.items():
            out.setdefault(item, set()).update(people)
    for item, rec in adjudication.items():
        if rec.get("adjudicator"):
            out.setdefault(item, set()).add(rec["adjudicator"])
    return out


def outside_reason(record: Mapping[str, Any], sent: Mapping[str, set[str]]) -> str | None:
    """Why a label does not count (None when it does, acceptance aside)."""
    who, queue = record["annotator"], record.get("queue")
    if queue is not None and queue != who:
        return f"made in {queue}'s queue by {who}"
    if who not in sent.get(record["item_id"], ()):
        return f"{who} was not sent this item"
    return None


def split(annotations: Iterable[Mapping[str, Any]], sent: Mapping[str, set[str]],
          accepted: Iterable[str] = ()) -> tuple[list[Mapping], list[dict[str, Any]]]:
    """(labels that count, labels left out with the reason) among records that carry a label or a skip."""
    accepted = {str(a) for a in accepted}
    counted, outside = [], []
    for rec in annotations:
        if is_audit_answer(rec):
            continue  # evidence for an audit, never a training label
        reason = None if str(rec.get("id")) in accepted else outside_reason(rec, sent)
        if reason is None:
            counted.append(rec)
        else:
            outside.append({"id": rec.get("id"), "item_id": rec["item_id"], "annotator": rec["annotator"],
                            "label": rec.get("label"), "queue": rec.get("queue"), "reason": reason})
    return counted, outside


def epoch(stamp: str | float | None) -> float | None:
    """A Label Studio timestamp ("2026-11-22T10:00:01.123456Z") as epoch seconds."""
    if stamp is None or isinstance(stamp, (int, float)):
        return stamp
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def changed_after_close(annotations: Iterable[Mapping[str, Any]], round_of: Mapping[str, int],
                        closed_at: Mapping[int, float]) -> list[dict[str, Any]]:
    """Labels created or changed after the round of their item closed: its agreement was measured
    without them. `round_of`: item -> round; `closed_at`: round -> epoch seconds."""
    out = []
    for rec in annotations:
        n = round_of.get(rec["item_id"])
        closed = closed_at.get(n) if n is not None else None
        when = epoch(rec.get("updated_at") or rec.get("created_at"))
        if closed is not None and when is not None and when > closed:
            out.append({"id": rec.get("id"), "item_id": rec["item_id"], "annotator": rec["annotator"],
                        "label": rec.get("label"), "round": n})
    return out
