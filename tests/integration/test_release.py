"""Releases on the real stack: v1, one item relabelled in Label Studio by both its annotators, v2 whose
diff names exactly that item, and a third release with no change that writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from loop.labels.interface import choice_result
from tests.helpers import add_annotators, cli, ticket_project

pytestmark = pytest.mark.integration

PEOPLE = {"rhea": "rhea-pass-1234", "milo": "milo-pass-1234"}
LABELS = ["billing", "delivery", "account", "technical", "out_of_scope"]


def test_two_releases_with_one_relabelled_item_and_a_third_with_no_change(stack_env, tmp_path):
    p, truth, _ = ticket_project(tmp_path, slice(200, 240), "rel", "Release test")
    clients = add_annotators(stack_env.ls_url, PEOPLE)
    round1 = cli("next-round", "--size", "20", "--annotators", ",".join(PEOPLE), "--overlap", "2", "--project", str(p))
    made: dict[str, dict[str, int]] = {}  # item -> annotator -> annotation id
    for name in PEOPLE:  # both agree with the truth everywhere: no tie anywhere for a relabel to tip
        given = round1["assignments"][name]
        for item, task in zip(given["items"], given["tasks"]):
            made.setdefault(item, {})[name] = clients[name].annotations.create(
                id=task, result=choice_result(truth[item])).id

    v1 = cli("release", "--note", "round 1", "--project", str(p))
    assert v1["created"] and v1["version"] == "v1" and v1["items"] == 20
    folder = Path(stack_env.workspace_path) / "releases" / f"project-{p}"
    assert Path(v1["path"]) == (folder / "v1").resolve()

    item = sorted(made)[0]
    new = next(lab for lab in LABELS if lab != truth[item])
    for name, annotation in made[item].items():  # both annotators change their mind about one item
        clients[name].annotations.update(id=annotation, result=choice_result(new))

    v2 = cli("release", "--note", "one relabel", "--project", str(p))
    assert v2["created"] and v2["version"] == "v2" and v2["parent"] == "v1"
    diff = cli("releases", "diff", "v1", "v2", "--project", str(p))
    assert [(c["id"], c["old"], c["new"]) for c in diff["label_changes"]] == [(item, truth[item], new)]
    assert diff["added"] == diff["removed"] == diff["split_moves"] == diff["text_changes"] == []
    assert diff["balance"][new]["change"] == 1 and diff["balance"][truth[item]]["change"] == -1
    assert "## Changes since v1" in (folder / "v2" / "README.md").read_text()

    v3 = cli("release", "--project", str(p))
    assert v3["created"] is False and v3["latest"] == "v2" and v3["message"].startswith("nothing changed since v2")
    assert sorted(d.name for d in folder.iterdir()) == ["v1", "v2"]
    listed = cli("releases", "list", "--project", str(p))
    assert [(r["version"], r["parent"], r["state"]) for r in listed] == [("v1", None, "ok"), ("v2", "v1", "ok")]
