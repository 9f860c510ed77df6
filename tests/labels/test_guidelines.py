"""Versioned guidelines: front matter parsing, the newest version in force, clear errors."""

from __future__ import annotations

import pytest

from loop.errors import DataError
from loop.labels.aggregation import aggregate
from loop.labels.guidelines import current, load_all, parse, to_html
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


# -- the instructions as Label Studio shows them ---------------------------------------------
def test_to_html_renders_headings_lists_emphasis_code_and_tables():
    html = to_html("# Title\n\n## Rules\n\n- first **money**\n- second `E-102`\n\n1. one\n2. two\n\n"
                   "| label | when |\n|---|---|\n| billing | a refund |\n\nA wrapped\nparagraph.")
    assert "<h1>Title</h1>" in html and "<h2>Rules</h2>" in html
    assert "<ul>\n<li>first <strong>money</strong></li>\n<li>second <code>E-102</code></li>\n</ul>" in html
    assert "<ol>\n<li>one</li>\n<li>two</li>\n</ol>" in html
    assert "<table>" in html and "<th>label</th>" in html and "<td>billing</td>" in html
    assert "<p>A wrapped\nparagraph.</p>" in html  # soft line breaks stay one paragraph


@pytest.mark.parametrize("raw", [
    "<script>alert('x')</script>",
    "Read this <img src=x onerror=alert(1)> carefully",
    "<iframe src='https://example.com'></iframe>",
])
def test_to_html_escapes_raw_html(raw):
    # Label Studio's cleaning of expert_instruction keeps <script> and <iframe> (SAFE_HTML_TAGS).
    html = to_html(f"# Rules\n\n{raw}\n")
    assert "<script" not in html and "<img" not in html and "<iframe" not in html
    assert "&lt;" in html  # shown to annotators as text


def test_to_html_refuses_script_links():
    html = to_html("[click](javascript:alert(1)) and [fine](https://example.com/guide)")
    assert "href=\"javascript:" not in html
    assert '<a href="https://example.com/guide">fine</a>' in html


def test_the_repo_guideline_as_html():
    g = parse(REPO_GUIDELINES / "v1.md")
    html = g.html
    assert html == to_html(g.body)
    assert html.startswith("<h1>Labelling guidelines") and "<h3>billing</h3>" in html
    assert "<strong>exactly one</strong>" in html and "<code>billing</code>" in html
    assert "<ol>" in html and "<li>" in html
    assert "\n## " not in html and "**" not in html  # no markdown left over


# -- what v1 says about disagreements, checked against the aggregation it describes -----------
def section(body: str, title: str) -> str:
    """A '## title' section of a body, its whitespace collapsed."""
    return " ".join(body.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0].split())


def test_v1_says_what_a_disagreement_means_and_who_settles_it():
    g = parse(REPO_GUIDELINES / "v1.md")
    unsure = section(g.body, "When you are unsure")
    assert "A customer who cannot log in cannot track a parcel → `account`" in unsure  # rule 2, unchanged
    assert "skip the task if you cannot decide" not in unsure  # a skip leaves the item one unchecked label
    assert "Do not skip a message because it is hard" in unsure
    disagree = section(g.body, "When annotators disagree")
    assert "it waits for an adjudicator, whose label is final" in disagree
    assert "one label against one, and there is no majority" in disagree
    assert "can end up `delivery`" in disagree  # the claim the next test checks
    assert "**Adjudicators**: decide each contested message afresh by these guidelines" in disagree


def test_v1s_claim_that_a_tie_can_overrule_rule_2():
    """v1: "a split between `account` and `delivery` on the example of rule 2 can end up
    `delivery`": the default aggregation breaks a one-against-one tie by reliability, not by the
    guideline's rules. alice follows rule 2 but was outvoted elsewhere, so bob's label wins."""
    records, t = [], 0
    for k in range(20):
        truth = ("billing", "delivery", "account", "technical")[k % 4]
        alice = "technical" if k % 5 == 0 else truth  # alice is outvoted on 4 items in 20
        for who, label in (("alice", alice), ("bob", truth), ("carol", truth)):
            records.append({"item_id": f"m{k}", "annotator": who, "label": label, "created_at": f"{t:04d}"})
            t += 1
    records += [{"item_id": "rule 2", "annotator": "alice", "label": "account", "created_at": f"{t:04d}"},
                {"item_id": "rule 2", "annotator": "bob", "label": "delivery", "created_at": f"{t + 1:04d}"}]
    decided = aggregate(records)["rule 2"]  # DEFAULT_METHOD, hierarchical-ds
    assert (decided["label"], decided["decided_by"], decided["n_labels"]) == ("delivery", "tie-break", 2)
    assert 0.5 < decided["confidence"] < 1.0  # the posterior: bob's record makes his label likelier


def test_a_guideline_file_that_is_not_utf8_is_one_clear_error(tmp_path):
    path = write(tmp_path, "v1.md", 1, ["a", "b"], body="Caf\u00e9 rules.")
    path.write_bytes(path.read_bytes().replace("é".encode(), b"\xe9"))
    with pytest.raises(DataError, match=r"v1.md:\d+: byte 0xe9 at byte offset \d+ .*not UTF-8.*save the file as UTF-8"):
        parse(path)
