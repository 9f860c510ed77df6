"""Releases as data: the manifest, the split that keeps earlier items on their side, the audit gate,
the diff between two manifests, and the card's section on it. No Redis, no files."""

from __future__ import annotations

import hashlib
import random

import pytest

from loop.curation.datacard import release_lines
from loop.curation.export import split_by_cluster
from loop.curation.release import (
    audit_gate,
    audit_summary,
    build_manifest,
    card_section,
    diff_manifests,
    same_data,
    sides,
    split_keeping_sides,
    version_number,
)
from loop.errors import ConfigError, DataError

FACTS = {"training_policy": {"aggregation": "hierarchical-ds", "guideline_version": None},
         "guidelines": {"version": 2}, "status": {"model_version": "v5"},
         "agreement": {"overall": {"alpha": 0.71, "percent": 0.84, "pairable_items": 40, "n_items": 50}},
         "validation": {"ok": True, "blockers": [], "allow_contradictions": False,
                        "checks": {"contradictions": {"count": 0}, "near_duplicates": {"count": 3}}}}


def row(i, label, text=None, version=1, decided_by="unanimous", n_labels=2):
    return {"id": i, "text": text or f"text of {i}", "label": label, "decided_by": decided_by, "confidence": 1.0,
            "n_labels": n_labels, "guideline_version": version, "round": 1}


def manifest(number, splits, *, facts=FACTS, audit=None, parent=None, note=None, accepted=None):
    return build_manifest(project_id=7, number=number, created_at="2026-11-29T04:00:00+00:00", parent=parent,
                          note=note, splits=splits, facts=facts, audit=audit, accepted_audit=accepted,
                          settings={"format": "jsonl", "seed": 0})


def test_manifest_has_each_item_and_the_release_context():
    m = manifest(2, {"train": [row("b", "x"), row("a", "y", version=2)], "test": [row("c", "x")]},
                 audit={"id": 3, "verdict": "individual"}, parent="v1", note="after round 4")
    assert [e["id"] for e in m["items"]] == ["a", "b", "c"]  # sorted by id, whatever the split
    assert m["items"][0] == {"id": "a", "sha256": hashlib.sha256(b"text of a").hexdigest(), "label": "y",
                             "decided_by": "unanimous", "guideline_version": 2, "n_labels": 2, "split": "train"}
    assert m["items"][2]["split"] == "test"
    assert (m["version"], m["parent"], m["note"], m["guideline_version"], m["aggregation"], m["model_version"]) == (
        "v2", "v1", "after round 4", 2, "hierarchical-ds", "v5")
    assert m["agreement"] == {"alpha": 0.71, "percent": 0.84, "items": 40}
    assert m["validation"] == {"ok": True, "blockers": [], "allow_contradictions": False,
                               "checks": {"contradictions": 0, "near_duplicates": 3}}
    assert m["counts"] == {"items": 3, "splits": {"train": 2, "test": 1}, "labels": {"x": 2, "y": 1}}
    assert m["audit"] == {"id": 3, "verdict": "individual"} and m["accepted_audit"] is None
    assert sides(m) == {"a": "train", "b": "train", "c": "test"}


def test_same_data_looks_at_texts_labels_and_splits_only():
    base = manifest(1, {"train": [row("a", "x"), row("b", "y")], "test": [row("c", "x")]})
    more_votes = manifest(2, {"train": [row("a", "x", n_labels=3, decided_by="majority"), row("b", "y")],
                              "test": [row("c", "x")]})
    assert same_data(base, more_votes)  # another agreeing label changes no data
    assert not same_data(base, manifest(2, {"train": [row("a", "y"), row("b", "y")], "test": [row("c", "x")]}))
    assert not same_data(base, manifest(2, {"train": [row("a", "x")], "test": [row("b", "y"), row("c", "x")]}))
    edited = {"train": [row("a", "x", text="new"), row("b", "y")], "test": [row("c", "x")]}
    assert not same_data(base, manifest(2, edited))
    added = {"train": [row("a", "x"), row("b", "y")], "test": [row("c", "x"), row("d", "x")]}
    assert not same_data(base, manifest(2, added))


def test_diff_names_added_removed_relabelled_and_moved_items():
    old = manifest(1, {"train": [row("a", "x"), row("b", "y"), row("c", "x")], "test": [row("d", "y")]},
                   audit={"id": 1, "verdict": "individual", "accuracy": 0.97})
    new_facts = {**FACTS, "agreement": {"overall": {"alpha": 0.75, "percent": 0.86, "pairable_items": 44}}}
    new = manifest(2, {"train": [row("a", "x"), row("b", "x", version=2, decided_by="adjudicated"), row("e", "y")],
                       "test": [row("c", "x"), row("d", "y", text="edited")]}, facts=new_facts,
                   audit={"id": 2, "verdict": "systemic", "accuracy": 0.9}, parent="v1")
    d = diff_manifests(old, new)
    assert (d["from"], d["to"], d["added"], d["removed"], d["text_changes"]) == ("v1", "v2", ["e"], [], ["d"])
    assert d["label_changes"] == [{"id": "b", "old": "y", "new": "x", "old_guideline_version": 1,
                                   "new_guideline_version": 2, "old_decided_by": "unanimous",
                                   "new_decided_by": "adjudicated"}]
    assert d["split_moves"] == [{"id": "c", "old": "train", "new": "test"}]
    assert d["balance"]["x"] == {"before": 2, "after": 3, "share_before": 0.5, "share_after": 0.6, "change": 1}
    assert d["balance"]["y"]["change"] == 0 and d["balance"]["y"]["share_after"] == pytest.approx(0.4)
    assert d["agreement"]["alpha_change"] == pytest.approx(0.04)
    assert d["agreement"]["percent_change"] == pytest.approx(0.02)
    assert d["audit"]["changed"] and d["audit"]["accuracy_change"] == pytest.approx(-0.07)
    assert not d["same_data"]
    nothing = diff_manifests(old, old)
    assert nothing["same_data"] and not nothing["added"] + nothing["removed"] + nothing["label_changes"]
    assert not nothing["audit"]["changed"] and nothing["agreement"]["alpha_change"] == 0


def test_a_removed_label_shows_in_the_balance_with_zero_after():
    old = manifest(1, {"train": [row("a", "x"), row("b", "z")], "test": [row("c", "x")]})
    new = manifest(2, {"train": [row("a", "x")], "test": [row("c", "x")]})
    d = diff_manifests(old, new)
    assert d["removed"] == ["b"] and d["balance"]["z"] == {"before": 1, "after": 0, "share_before": 1 / 3,
                                                           "share_after": 0.0, "change": -1}


# --------------------------------------------------------------------------------------------
# The split that keeps sides


def random_rows(n, seed=1):
    rng = random.Random(seed)
    return [row(f"i{k:04d}", rng.choice("abcde")) for k in range(n)]


def test_without_a_parent_the_split_is_exports():
    rows = random_rows(60)
    assert split_keeping_sides(rows, list(range(60)), {}, seed=3) == split_by_cluster(rows, list(range(60)), seed=3)


def test_a_relabel_moves_nobody_though_the_plain_split_would():
    rows = random_rows(200)
    clusters = list(range(200))
    train, test = split_by_cluster(rows, clusters, seed=0)
    before = {r["id"]: "train" for r in train} | {r["id"]: "test" for r in test}
    relabelled = [dict(r) for r in rows]
    relabelled[17]["label"] = "e" if relabelled[17]["label"] != "e" else "a"
    plain = split_by_cluster(relabelled, clusters, seed=0)
    moved_plain = sum(before[r["id"]] != side for side, part in zip(("train", "test"), plain) for r in part)
    assert moved_plain > 0  # the reason releases keep sides: stratification reshuffles on one relabel
    kept = split_keeping_sides(relabelled, clusters, before, seed=0)
    assert {r["id"]: side for side, part in zip(("train", "test"), kept) for r in part} == before


def test_new_items_are_split_among_themselves_and_clusters_stay_whole():
    rows = random_rows(100)
    before = {r["id"]: ("test" if k % 5 == 0 else "train") for k, r in enumerate(rows[:60])}
    clusters = list(range(100))
    clusters[70] = clusters[3]   # a new item joins old item 3's cluster (a near-duplicate)
    clusters[71] = clusters[5]   # and item 5's (which was in test)
    train, test = split_keeping_sides(rows, clusters, before, test_size=0.25, seed=0)
    side = {r["id"]: "train" for r in train} | {r["id"]: "test" for r in test}
    assert all(side[i] == s for i, s in before.items())
    assert side["i0070"] == side["i0003"] == "train" and side["i0071"] == side["i0005"] == "test"
    fresh = [r["id"] for r in rows[60:] if r["id"] not in ("i0070", "i0071")]
    assert 0.1 <= sum(side[i] == "test" for i in fresh) / len(fresh) <= 0.4


def test_a_single_new_item_lands_by_a_stable_draw():
    rows = random_rows(11)
    before = {r["id"]: ("test" if k < 3 else "train") for k, r in enumerate(rows[:10])}
    sides_seen = set()
    for seed in range(20):
        train, test = split_keeping_sides(rows, list(range(11)), before, seed=seed)
        again = split_keeping_sides(rows, list(range(11)), before, seed=seed)
        assert (train, test) == again
        sides_seen.add("test" if rows[10] in test else "train")
    assert sides_seen == {"train", "test"}  # the seed decides, not a fixed rule


def test_a_cluster_joining_both_sides_goes_where_most_of_it_was_a_tie_to_test():
    rows = random_rows(6)
    before = {"i0000": "train", "i0001": "train", "i0002": "test", "i0003": "test", "i0004": "train"}
    clusters = [0, 0, 0, 1, 1, 2]  # cluster 0: two train, one test; cluster 1: one each
    train, test = split_keeping_sides(rows, clusters, before, seed=0)
    side = {r["id"]: "train" for r in train} | {r["id"]: "test" for r in test}
    assert [side[f"i000{k}"] for k in range(5)] == ["train", "train", "train", "test", "test"]


def test_keeping_sides_that_empties_a_split_says_so():
    rows = random_rows(4)
    with pytest.raises(DataError, match="test split empty"):
        split_keeping_sides(rows[:3], [0, 1, 2], {r["id"]: "train" for r in rows[:3]})


# --------------------------------------------------------------------------------------------
# The audit gate and version names


SYSTEMIC = {"id": 4, "auditor": "dora", "created_at": 1.0, "status": "reported",
            "report": {"verdict": "systemic", "accuracy": 0.88, "interval": [0.8, 0.93], "n_answered": 50,
                       "n_errors": 6}}


def test_audit_summary_keeps_who_and_the_verdict():
    assert audit_summary(None) is None
    assert audit_summary(SYSTEMIC) == {"id": 4, "auditor": "dora", "created_at": 1.0, "status": "reported",
                                       "verdict": "systemic", "accuracy": 0.88, "interval": [0.8, 0.93],
                                       "n_answered": 50, "n_errors": 6}
    assert audit_summary({"id": 5, "auditor": "eve", "status": "open", "report": None})["verdict"] is None


def test_a_systemic_audit_refuses_a_release_unless_accepted_with_a_note():
    systemic = audit_summary(SYSTEMIC)
    refused = r"audit \(#4 by dora\) found systemic errors \(label accuracy 88.0%\).*--accept-audit"
    with pytest.raises(DataError, match=refused):
        audit_gate(systemic, None)
    assert audit_gate(systemic, "  billing fixed in round 7 ") == "billing fixed in round 7"
    with pytest.raises(ConfigError, match="needs a note"):
        audit_gate(systemic, "  ")
    individual = audit_summary({**SYSTEMIC, "report": {**SYSTEMIC["report"], "verdict": "individual"}})
    assert audit_gate(individual, None) is None and audit_gate(None, None) is None
    with pytest.raises(ConfigError, match="verdict is individual; leave it out"):
        audit_gate(individual, "why not")
    with pytest.raises(ConfigError, match="there is no audit"):
        audit_gate(None, "why not")


@pytest.mark.parametrize("text, number", [("v1", 1), ("2", 2), (" v10 ", 10)])
def test_version_names(text, number):
    assert version_number(text) == number


@pytest.mark.parametrize("text", ["v0", "version2", "", "v-1", "1.5"])
def test_a_bad_version_name_lists_the_known_ones(text):
    with pytest.raises(ConfigError, match="known: v1, v2"):
        version_number(text, ["v1", "v2"])


# --------------------------------------------------------------------------------------------
# The card's section


def test_the_card_says_first_release_or_what_changed():
    first = manifest(1, {"train": [row("a", "x")], "test": [row("b", "y")]}, note="pilot")
    lines = "\n".join(release_lines(card_section(first, None)))
    assert lines.startswith("## First release") and "Note: pilot" in lines and "Changes" not in lines

    second = manifest(2, {"train": [row("a", "y", version=2)], "test": [row("b", "y"), row("c", "x")]},
                      parent="v1", audit=audit_summary(SYSTEMIC), accepted="billing fixed in round 7")
    text = "\n".join(release_lines(card_section(second, diff_manifests(first, second))))
    assert text.startswith("## Changes since v1")
    assert "- Items added: 1 (`c`)" in text and "- Items removed: 0" in text and "- Labels changed: 1" in text
    assert "| a | x | y | 1 -> 2 | unanimous -> unanimous |" in text
    assert "Released despite a systemic audit verdict** (audit #4 by dora" in text
    assert "Accepted because: billing fixed in round 7" in text
    assert "| x | 1 | 1 | +0 |" not in text and "| y | 1 | 2 | +1 | 50.0% | 66.7% |" in text  # only shifted labels
