"""Assignment: each item to `overlap` distinct annotators, loads balanced to within one."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from loop.core.assign import assign, per_annotator
from loop.errors import ConfigError

CASES = [(n_items, n_people, overlap)
         for n_items in (0, 1, 2, 3, 5, 7, 10, 13, 50)
         for n_people in range(1, 7)
         for overlap in range(1, n_people + 1)]


def people(k: int) -> list[str]:
    return [f"annotator{i}" for i in range(k)]


def items(n: int) -> list[str]:
    return [f"item-{i:03d}" for i in range(n)]


@pytest.mark.parametrize("n_items, n_people, overlap", CASES)
def test_overlap_distinct_and_balanced(n_items, n_people, overlap):
    names = people(n_people)
    out = assign(items(n_items), names, overlap)
    assert list(out) == items(n_items)  # every item, in order
    for chosen in out.values():
        assert len(chosen) == overlap
        assert len(set(chosen)) == overlap
        assert set(chosen) <= set(names)
        assert chosen == sorted(chosen, key=names.index)  # listed in annotator order
    load = Counter(a for chosen in out.values() for a in chosen)
    loads = [load[a] for a in names]  # includes zeros for people with nothing
    assert sum(loads) == n_items * overlap
    assert max(loads) - min(loads) <= 1


@pytest.mark.parametrize("n_items, n_people, overlap", CASES)
def test_per_annotator_inverts_assign(n_items, n_people, overlap):
    out = assign(items(n_items), people(n_people), overlap)
    inverse = per_annotator(out)
    pairs = {(i, a) for i, chosen in out.items() for a in chosen}
    assert {(i, a) for a, its in inverse.items() for i in its} == pairs
    for a, its in inverse.items():
        assert its == [i for i in out if a in out[i]]  # in assignment order, no repeats
    assert all(inverse.values())  # nobody listed with zero items


def test_load_balanced_within_each_prefix():
    """Balance holds at every point, so a round cut short is still fair."""
    names = people(4)
    out = assign(items(23), names, 3)
    load = Counter()
    for chosen in out.values():
        load.update(chosen)
        assert max(load[a] for a in names) - min(load[a] for a in names) <= 1


def test_overlap_equal_to_everyone():
    names = ["carol", "alice", "bob"]
    out = assign(items(4), names, 3)
    assert all(chosen == names for chosen in out.values())


def test_single_annotator_gets_everything():
    assert per_annotator(assign(items(3), ["solo"], 1)) == {"solo": items(3)}


def test_first_slot_rotates():
    """With overlap 1 and three people, three items go to three different people."""
    out = assign(items(3), ["a", "b", "c"], 1)
    assert sorted(a for chosen in out.values() for a in chosen) == ["a", "b", "c"]


def test_deterministic():
    assert assign(items(17), people(5), 2) == assign(items(17), people(5), 2)


@pytest.mark.parametrize("overlap", [0, -1])
def test_overlap_below_one(overlap):
    with pytest.raises(ConfigError) as exc:
        assign(items(2), ["a", "b"], overlap)
    assert "--overlap" in str(exc.value)


def test_overlap_above_annotators():
    with pytest.raises(ConfigError) as exc:
        assign(items(2), ["a", "b"], 3)
    msg = str(exc.value)
    assert "--overlap" in msg and "3" in msg and "(2)" in msg


def test_duplicate_annotators():
    with pytest.raises(ConfigError) as exc:
        assign(items(2), ["a", "b", "a"], 1)
    assert "twice" in str(exc.value)


def test_no_annotators():
    with pytest.raises(ConfigError) as exc:
        assign(items(2), [], 1)
    assert "--annotators" in str(exc.value)


def test_errors_even_with_no_items():
    """Validation does not depend on there being work (next_round relies on assign([], ...))."""
    for names, overlap in [([], 1), (["a"], 2), (["a", "a"], 1), (["a"], 0)]:
        with pytest.raises(ConfigError):
            assign([], names, overlap)


def test_per_annotator_of_empty():
    assert per_annotator({}) == {}


def test_per_annotator_hand_built():
    assignments = {"x": ["a", "b"], "y": ["b"], "z": ["a", "c"]}
    assert per_annotator(assignments) == {"a": ["x", "z"], "b": ["x", "y"], "c": ["z"]}


def test_every_pairing_appears_over_many_items():
    """Rotation spreads pairs: with 4 people and overlap 2, more than one pair is used."""
    out = assign(items(12), people(4), 2)
    pairs = Counter(tuple(chosen) for chosen in out.values())
    assert len(pairs) > 1
    assert set(pairs) <= set(itertools.combinations(people(4), 2))
