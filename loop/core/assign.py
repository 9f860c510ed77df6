"""Assigning chosen items to annotators (each item to `overlap` distinct people, load balanced), and
who still owes what."""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from loop.errors import ConfigError


def assign(items: Sequence[str], annotators: Sequence[str], overlap: int) -> dict[str, list[str]]:
    """item -> the `overlap` annotators who label it; per-person loads differ by at most one."""
    if not annotators:
        raise ConfigError("no annotators given; pass --annotators alice,bob,...")
    if len(set(annotators)) != len(annotators):
        raise ConfigError(f"--annotators lists someone twice: {', '.join(annotators)}")
    if not 1 <= overlap <= len(annotators):
        raise ConfigError(f"--overlap is {overlap}, but must be between 1 and the number of annotators "
                          f"({len(annotators)})")
    load = {a: 0 for a in annotators}
    order = {a: i for i, a in enumerate(annotators)}
    out: dict[str, list[str]] = {}
    for item in items:
        # Least-loaded first; ties go round-robin so nobody always gets the "first" slot.
        chosen = sorted(annotators, key=lambda a: (load[a], (order[a] - len(out)) % len(annotators)))[:overlap]
        for a in chosen:
            load[a] += 1
        out[item] = sorted(chosen, key=order.__getitem__)
    return out


def per_annotator(assignments: dict[str, list[str]]) -> dict[str, list[str]]:
    """annotator -> the items assigned to them, in assignment order."""
    out: dict[str, list[str]] = {}
    for item, people in assignments.items():
        for a in people:
            out.setdefault(a, []).append(item)
    return out


def progress(assignments: dict[str, list[str]], labels: Iterable[Mapping]) -> dict[str, dict[str, Any]]:
    """annotator -> {assigned, done, owed: [item ids]}, from label records ({item_id, annotator});
    a skip counts as done."""
    done = {(a["item_id"], a["annotator"]) for a in labels}
    out: dict[str, dict[str, Any]] = {}
    for annotator, items in per_annotator(assignments).items():
        owed = [i for i in items if (i, annotator) not in done]
        out[annotator] = {"assigned": len(items), "done": len(items) - len(owed), "owed": owed}
    return out
