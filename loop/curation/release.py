"""Releases as data: the manifest of a release, the split that keeps items where their parent put
them, and the diff between two manifests. No I/O: `workflows.release` reads and writes the folders.

A manifest describes one immutable version of the exported dataset: one entry per item (id,
sha256 of its text, label, how it was decided, guideline version, label count, split) and the
release's context (guideline version, aggregation, model version, agreement, the latest audit,
the validator's summary, the parent release, the note, every file's sha256). Two releases hold
the same data when their items agree on id, text hash, label and split: that is what
`same_data` compares, and what makes a second `loop release` with no change write nothing.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from loop.curation.export import split_by_cluster
from loop.errors import ConfigError, DataError

SCHEMA = "loop-release/1"
SYSTEMIC = "systemic"
# What makes two releases hold different data (other fields, e.g. n_labels, are context).
DATA_FIELDS = ("sha256", "label", "split")
_VERSION = re.compile(r"v?(\d+)")


def version_name(number: int) -> str:
    return f"v{number}"


def version_number(text: str, known: Sequence[str] = ()) -> int:
    """"v2" or "2" -> 2; anything else is a ConfigError naming the known versions."""
    m = _VERSION.fullmatch(str(text).strip())
    if not m or int(m.group(1)) < 1:
        shown = ", ".join(known) if known else "none yet (`loop release` makes v1)"
        raise ConfigError(f"{text!r} is not a release version; versions are v1, v2, ... (known: {shown})")
    return int(m.group(1))


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------
# The split


def _stable_unit(seed: int, key: str) -> float:
    """A number in [0, 1) fixed by the seed and the key: the same cluster always lands on the same side."""
    return int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:12], 16) / 16 ** 12


def split_keeping_sides(rows: Sequence[dict], clusters: Sequence[int], sides: Mapping[str, str], *,
                        test_size: float = 0.2, seed: int = 0) -> tuple[list, list]:
    """(train rows, test rows) like `export.split_by_cluster`, but an item that was in the parent
    release (`sides`: item id -> "train" | "test") stays on its side, so a model trained on one
    release is never scored on its own training items by the next.

    A cluster with items of the parent goes where most of them were (a tie goes to test: a cluster
    now joins items from both sides when a new near-duplicate links them). The clusters new since
    are split among themselves by `split_by_cluster` (stratified, `test_size` of them in test);
    when they are too few for that, each goes to test with probability `test_size`, by a hash of
    the seed and its first id. Without `sides` this is `split_by_cluster`.
    """
    if not sides:
        return split_by_cluster(rows, clusters, test_size=test_size, seed=seed)
    if len(clusters) != len(rows):
        raise ValueError(f"split_keeping_sides got {len(rows)} rows but {len(clusters)} cluster ids")
    members: dict[int, list[int]] = {}
    for i, c in enumerate(clusters):
        members.setdefault(c, []).append(i)
    side_of: dict[int, str] = {}
    for c, idx in members.items():
        votes = Counter(sides[rows[i]["id"]] for i in idx if rows[i]["id"] in sides)
        if votes:
            side_of[c] = "test" if votes["test"] >= votes["train"] else "train"
    fresh = [i for i, c in enumerate(clusters) if c not in side_of]
    if fresh:
        try:
            _, new_test = split_by_cluster([rows[i] for i in fresh], [clusters[i] for i in fresh],
                                           test_size=test_size, seed=seed)
            in_test = {r["id"] for r in new_test}
            side_of |= {clusters[i]: "test" if rows[i]["id"] in in_test else "train" for i in fresh}
        except DataError:  # one new cluster, or a share that leaves a side empty: draw each cluster alone
            for c in {clusters[i] for i in fresh}:
                first = min(str(rows[i]["id"]) for i in members[c])
                side_of[c] = "test" if _stable_unit(seed, first) < test_size else "train"
    train = [r for r, c in zip(rows, clusters) if side_of[c] == "train"]
    test = [r for r, c in zip(rows, clusters) if side_of[c] == "test"]
    if not train or not test:
        raise DataError(f"keeping every item on its previous side leaves the {'train' if not train else 'test'} "
                        "split empty; release with another --seed or --test-size only if you mean to reshuffle")
    return train, test


# --------------------------------------------------------------------------------------------
# The manifest


def item_entries(splits: Mapping[str, Sequence[Mapping]]) -> list[dict[str, Any]]:
    """One manifest entry per exported row, sorted by id."""
    out = [{"id": str(r["id"]), "sha256": text_sha256(r["text"]), "label": r["label"], "decided_by": r["decided_by"],
            "guideline_version": r.get("guideline_version"), "n_labels": r["n_labels"], "split": name}
           for name, rows in splits.items() for r in rows]
    return sorted(out, key=lambda e: e["id"])


def audit_summary(record: Mapping | None) -> dict[str, Any] | None:
    """The latest audit as a release records it (`store.latest_audit`'s record), or None."""
    if not record:
        return None
    report = record.get("report") or {}
    interval = report.get("interval")
    return {"id": record.get("id"), "auditor": record.get("auditor"), "created_at": record.get("created_at"),
            "status": record.get("status"), "verdict": report.get("verdict"), "accuracy": report.get("accuracy"),
            "interval": list(interval) if interval else None, "n_answered": report.get("n_answered"),
            "n_errors": report.get("n_errors")}


def audit_gate(audit: Mapping | None, accept_note: str | None) -> str | None:
    """The note to record when a systemic audit verdict is accepted; None when nothing needs
    accepting. A systemic verdict without a note, or a note with nothing to accept, is a ConfigError."""
    systemic = bool(audit) and audit.get("verdict") == SYSTEMIC
    if accept_note is not None and not accept_note.strip():
        raise ConfigError("--accept-audit needs a note saying why the release goes ahead, e.g. "
                          "--accept-audit \"errors in 'billing' fixed by round 7's relabels\"")
    if systemic and accept_note is None:
        acc = audit.get("accuracy")
        raise DataError(f"the latest audit (#{audit.get('id')} by {audit.get('auditor')}) found systemic errors"
                        + (f" (label accuracy {acc:.1%})" if isinstance(acc, (int, float)) else "")
                        + "; fix them and audit again (`loop audit start`), or pass --accept-audit \"NOTE\" to "
                        "release anyway (the note goes into the manifest and the data card)")
    if not systemic and accept_note is not None:
        what = "no audit" if not audit else f"audit #{audit.get('id')}'s verdict is {audit.get('verdict') or 'pending'}"
        raise ConfigError(f"--accept-audit accepts a systemic audit verdict, and there is {what}; leave it out")
    return accept_note.strip() if systemic else None


def agreement_summary(overall: Mapping | None) -> dict[str, Any] | None:
    """Overall agreement as the data card has it: Krippendorff's alpha, percent agreement, and the
    items with two or more labels they rest on."""
    if not overall:
        return None
    return {"alpha": overall.get("alpha"), "percent": overall.get("percent"),
            "items": overall.get("pairable_items")}


def validation_summary(validation: Mapping) -> dict[str, Any]:
    """The validator's verdict: ok, blockers, and the count of each check (the card's facts)."""
    return {"ok": validation.get("ok"), "blockers": list(validation.get("blockers") or []),
            "checks": {name: (c or {}).get("count") for name, c in (validation.get("checks") or {}).items()},
            "allow_contradictions": bool(validation.get("allow_contradictions"))}


def build_manifest(*, project_id: int, number: int, created_at: str, parent: str | None, note: str | None,
                   splits: Mapping[str, Sequence[Mapping]], facts: Mapping[str, Any], audit: Mapping | None,
                   accepted_audit: str | None, settings: Mapping[str, Any]) -> dict[str, Any]:
    """A release's manifest without its file checksums (those come once the files are written).
    `facts` are the data card's (`datacard.card_facts`), so the manifest and the card agree."""
    items = item_entries(splits)
    policy = dict(facts.get("training_policy") or {})
    return {
        "schema": SCHEMA, "project_id": project_id, "version": version_name(number), "number": number,
        "created_at": created_at, "parent": parent, "note": note,
        "guideline_version": (facts.get("guidelines") or {}).get("version"),
        "aggregation": policy.get("aggregation"), "training_policy": policy,
        "model_version": (facts.get("status") or {}).get("model_version"),
        "agreement": agreement_summary((facts.get("agreement") or {}).get("overall")),
        "audit": dict(audit) if audit else None, "accepted_audit": accepted_audit,
        "validation": validation_summary(facts.get("validation") or {}),
        "export": dict(settings),
        "counts": {"items": len(items), "splits": {name: len(rows) for name, rows in splits.items()},
                   "labels": dict(sorted(Counter(e["label"] for e in items).items()))},
        "items": items,
    }


def sides(manifest: Mapping | None) -> dict[str, str]:
    """item id -> split in a manifest (empty without one)."""
    return {e["id"]: e["split"] for e in (manifest or {}).get("items", [])}


def same_data(old: Mapping, new: Mapping) -> bool:
    """Whether two manifests hold the same items, texts, labels and splits."""
    def key(m):
        return {e["id"]: tuple(e.get(f) for f in DATA_FIELDS) for e in m["items"]}
    return key(old) == key(new)


# --------------------------------------------------------------------------------------------
# The diff


def _balance(items: Sequence[Mapping]) -> dict[str, tuple[int, float]]:
    counts = Counter(e["label"] for e in items)
    return {lab: (n, n / len(items)) for lab, n in counts.items()}


def _change(before: Any, after: Any) -> float | None:
    return after - before if isinstance(before, (int, float)) and isinstance(after, (int, float)) else None


def diff_manifests(old: Mapping, new: Mapping) -> dict[str, Any]:
    """What changed from release `old` to release `new`: items added and removed, texts changed
    under the same id, labels changed (with the guideline versions and decisions behind the old
    and new label), split moves, the class balance before and after, and the change in agreement
    and in the latest audit. Lists are sorted by item id."""
    before = {e["id"]: e for e in old["items"]}
    after = {e["id"]: e for e in new["items"]}
    kept = sorted(set(before) & set(after))
    labels = [{"id": i, "old": before[i]["label"], "new": after[i]["label"],
               "old_guideline_version": before[i].get("guideline_version"),
               "new_guideline_version": after[i].get("guideline_version"),
               "old_decided_by": before[i].get("decided_by"), "new_decided_by": after[i].get("decided_by")}
              for i in kept if before[i]["label"] != after[i]["label"]]
    moves = [{"id": i, "old": before[i]["split"], "new": after[i]["split"]}
             for i in kept if before[i]["split"] != after[i]["split"]]
    texts = [i for i in kept if before[i]["sha256"] != after[i]["sha256"]]
    b, a = _balance(old["items"]), _balance(new["items"])
    balance = {lab: {"before": b.get(lab, (0, 0.0))[0], "after": a.get(lab, (0, 0.0))[0],
                     "share_before": b.get(lab, (0, 0.0))[1], "share_after": a.get(lab, (0, 0.0))[1],
                     "change": a.get(lab, (0, 0.0))[0] - b.get(lab, (0, 0.0))[0]}
               for lab in sorted(set(b) | set(a))}
    ag_old, ag_new = old.get("agreement") or {}, new.get("agreement") or {}
    au_old, au_new = old.get("audit"), new.get("audit")
    return {
        "from": old["version"], "to": new["version"],
        "added": sorted(set(after) - set(before)), "removed": sorted(set(before) - set(after)),
        "label_changes": labels, "split_moves": moves, "text_changes": texts,
        "same_data": same_data(old, new),
        "balance": balance,
        "agreement": {"before": old.get("agreement"), "after": new.get("agreement"),
                      "alpha_change": _change(ag_old.get("alpha"), ag_new.get("alpha")),
                      "percent_change": _change(ag_old.get("percent"), ag_new.get("percent"))},
        "audit": {"before": au_old, "after": au_new,
                  "changed": (au_old or {}).get("id") != (au_new or {}).get("id")
                  or (au_old or {}).get("verdict") != (au_new or {}).get("verdict"),
                  "accuracy_change": _change((au_old or {}).get("accuracy"), (au_new or {}).get("accuracy"))},
        "guideline_version": {"before": old.get("guideline_version"), "after": new.get("guideline_version")},
        "model_version": {"before": old.get("model_version"), "after": new.get("model_version")},
    }


def card_section(manifest: Mapping, diff: Mapping | None) -> dict[str, Any]:
    """What the data card says about the release (`facts["release"]`): its version, parent, note,
    an accepted audit, and the diff against its parent (None for a first release)."""
    return {"version": manifest["version"], "parent": manifest.get("parent"), "note": manifest.get("note"),
            "created_at": manifest.get("created_at"), "audit": manifest.get("audit"),
            "accepted_audit": manifest.get("accepted_audit"), "diff": dict(diff) if diff else None}
