"""Versioned guidelines: front matter parsing, the newest version in force, clear errors."""

from __future__ import annotations

import pytest

from loop.errors import DataError
from loop.labels.guidelines import current, load_all, parse
from tests.helpers import REPO
from tests.helpers import write_guideline as write

REPO_GUIDELINES = REPO / "guidelines"


def test_repo_guidelines_v1():
    g = parse(REPO_GUIDELINES / "v1.md")
    assert g.version == 1
    assert list(g.labels) == ["billing", "delivery", "account", "technical", "out_of_scope"]  # display order
    assert all(definition.strip() for definition in g.labels.values())
    assert "refund" in g.labels["billing"]
    assert g.negatives == ["out_of_scope"]
    assert g.body.startswith("# Labelling guidelines")
    assert "version:" not in g.body  # the front matter is not part of the body
    assert g.path == REPO_GUIDELINES / "v1.md"


def test_repo_folder_current_ignores_readme():
    g = current(REPO_GUIDELINES)
    assert g is not None and g.version == 1
    assert [x.path.name for x in load_all(REPO_GUIDELINES)] == ["v1.md"]


def test_newest_version_is_current(tmp_path):
    write(tmp_path, "v1.md", 1, {"a": "first a", "b": "first b"})
    write(tmp_path, "v2.md", 2, {"a": "second a", "b": "second b", "c": "new"}, negatives=["c"])
    g = current(tmp_path)
    assert g.version == 2
    assert g.labels == {"a": "second a", "b": "second b", "c": "new"}
    assert g.negatives == ["c"]
    assert [x.version for x in load_all(tmp_path)] == [1, 2]


def test_versions_order_numerically_not_by_name(tmp_path):
    for n in (1, 2, 10, 9):
        write(tmp_path, f"v{n}.md", n, ["a", "b"])
    assert [g.version for g in load_all(tmp_path)] == [1, 2, 9, 10]
    assert current(tmp_path).version == 10


def test_label_list_means_no_definitions(tmp_path):
    g = parse(write(tmp_path, "v1.md", 1, ["spam", "ham"]))
    assert g.labels == {"spam": "", "ham": ""}
    assert g.negatives == []


def test_body_may_contain_rules(tmp_path):
    path = write(tmp_path, "v1.md", 1, ["a", "b"], body="# Title\n\nabove\n\n---\n\nbelow the rule")
    g = parse(path)
    assert g.body.startswith("# Title") and g.body.endswith("below the rule")
    assert "---" in g.body


def test_content_hash_tracks_file_content(tmp_path):
    path = write(tmp_path, "v1.md", 1, ["a", "b"])
    before = parse(path).content_hash
    assert parse(path).content_hash == before
    write(tmp_path, "v1.md", 1, ["a", "b"], body="Edited.")
    assert parse(path).content_hash != before


def test_missing_front_matter(tmp_path):
    path = tmp_path / "v1.md"
    path.write_text("# Just markdown\n\nNo front matter here.\n", encoding="utf-8")
    with pytest.raises(DataError) as exc:
        parse(path)
    assert str(path) in str(exc.value) and "front matter" in str(exc.value)
    with pytest.raises(DataError):
        current(tmp_path)


@pytest.mark.parametrize("front", [
    "labels: [a, b]\n",                  # no version
    "version: one\nlabels: [a, b]\n",    # version not an integer
    "version: 1\n",                      # no labels
    "version: 1\nlabels: []\n",          # empty labels
])
def test_incomplete_front_matter(tmp_path, front):
    path = tmp_path / "v1.md"
    path.write_text(f"---\n{front}---\nbody\n", encoding="utf-8")
    with pytest.raises(DataError) as exc:
        parse(path)
    assert str(path) in str(exc.value) and "version" in str(exc.value)


def test_unclosed_or_broken_front_matter(tmp_path):
    path = tmp_path / "v1.md"
    path.write_text("---\nversion: 1\nlabels: [a, b\n", encoding="utf-8")
    with pytest.raises(DataError) as exc:
        parse(path)
    assert str(path) in str(exc.value)


def test_no_folder_or_empty_folder(tmp_path):
    assert current(tmp_path / "absent") is None
    assert load_all(tmp_path / "absent") == []
    assert current(tmp_path) is None


def test_bump_writes_the_next_version_and_a_changelog_line(tmp_path):
    import shutil

    from loop.labels.guidelines import bump, current, get

    folder = tmp_path / "g"
    shutil.copytree(REPO_GUIDELINES, folder)
    edited = tmp_path / "edited.md"
    edited.write_text((folder / "v1.md").read_text().replace("## Purpose", "## Purpose\n\nA new rule.\n", 1))
    g = bump(folder, edited, "added a rule")
    assert g.version == 2 and current(folder).version == 2 and "A new rule." in g.body
    assert get(folder, 1).labels == g.labels
    assert "v2" in (folder / "CHANGELOG.md").read_text() and "added a rule" in (folder / "CHANGELOG.md").read_text()


@pytest.mark.parametrize("change, note, message", [
    (lambda t: t, "no change", "does not change anything"),
    (lambda t: t.replace("## Purpose", "## P2", 1), "  ", "changelog line"),
    (lambda t: t.split("---", 2)[2], "front matter gone", "no front matter"),
])
def test_bump_refuses_and_writes_nothing(tmp_path, change, note, message):
    import shutil

    from loop.errors import DataError
    from loop.labels.guidelines import bump

    folder = tmp_path / "g"
    shutil.copytree(REPO_GUIDELINES, folder)
    edited = tmp_path / "edited.md"
    edited.write_text(change((folder / "v1.md").read_text()))
    with pytest.raises(DataError, match=message):
        bump(folder, edited, note)
    assert sorted(p.name for p in folder.glob("v*.md")) == ["v1.md"]
