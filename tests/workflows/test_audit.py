"""`loop audit` on a real Redis and the fake Label Studio: the sample leaves out the auditor's own
items, the audit queue shows text only, the auditor's answers never count as labels, the report's
verdict, and every disagreement waits for an adjudicator who is not the auditor."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from loop.core.dataset import text_key
from loop.errors import ConfigError
from loop.workflows import audit
from loop.workflows.adjudicate import assign as adjudicate
from loop.workflows.status import status
from loop.workflows.training import final_labels, labels_that_count
from tests.helpers import stamp

P = 14
USERS = {"ann": 5, "bob": 6, "dora": 7, "judge": 8}


@pytest.fixture
def ctx(redis_store, fake_ls):
    """40 items; ann and bob labelled i00-i29 (round 1, overlap 2) and agree; dora labelled i25-i29 too."""
    texts = {f"i{n:02d}": f"ticket {n}" for n in range(40)}
    redis_store.save_project(P, {"labels": ["billing", "delivery", "account"]}, make_current=False)
    redis_store.add_items(P, {i: {"task_id": 100 + n, "key": text_key(t)} for n, (i, t) in enumerate(texts.items())},
                          texts=texts)
    for name, uid in USERS.items():
        redis_store.add_annotator({"name": name, "ls_user_id": uid})
    labelled = [f"i{n:02d}" for n in range(30)]
    redis_store.plan_round(P, {"id": 1, "size": 30, "overlap": 2, "strategy": "random", "created_at": 0},
                           {i: ["ann", "bob"] + (["dora"] if i >= "i25" else []) for i in labelled})
    redis_store.update_round(P, 1, status="open", queues={})
    for n, (item, text) in enumerate(texts.items()):  # the main project's tasks
        fake_ls.tasks[100 + n] = {"id": 100 + n, "project": P, "data": {"text": text, "item_id": item},
                                  "annotations": []}
    ann_id = 0
    for n, item in enumerate(labelled):
        for name in ("ann", "bob") + (("dora",) if item >= "i25" else ()):
            ann_id += 1
            fake_ls.annotate(100 + n, ann_id, truth(item), stamp(ann_id % 60), user=USERS[name])
    settings = SimpleNamespace(backend_url="http://backend.test", backend_auth=None, ls_url="http://ls.test")
    return SimpleNamespace(store=redis_store, ls=fake_ls, settings=settings, project_id=lambda explicit=None: P,
                           workspace=SimpleNamespace(backend_login=lambda: ("label-studio", "secret")))


def truth(item: str) -> str:
    return ("billing", "delivery", "account")[int(item[1:]) % 3]


def answer(ctx, started, item, label, ann_id):
    task = ctx.store.audit_items(P, started["audit"])[item]["task_id"]
    ctx.ls.annotate(task, ann_id, label, stamp(ann_id % 60), user=USERS["dora"])


def test_an_audit_samples_final_labels_blind_and_its_answers_never_count(ctx):
    started = audit.start(ctx, P, "dora", sample=20, seed=11)
    before = final_labels(ctx.store, P)  # start synced the labels
    assert len(before) == 30
    assert started["population"] == 25 and len(started["sample"]) == 20  # i25-i29 are dora's own
    assert all(i < "i25" for i in started["sample"]) and started["tab"] == "Audit · dora"
    again = audit.final_labels_to_audit(ctx.store, P, "dora")
    assert sorted(again) == [f"i{n:02d}" for n in range(25)]
    q = started["ls_project"]
    assert ctx.ls.projects[q]["title"].endswith("· audit 1 · dora")
    assert not ctx.ls.projects[q]["show_collab_predictions"]
    tasks = [t for t in ctx.ls.tasks.values() if t.get("project") == q]
    assert sorted(t["data"]["item_id"] for t in tasks) == started["sample"]
    assert all(t["annotations"] == [] and set(t["data"]) == {"text", "item_id"} for t in tasks)  # text only
    frozen = ctx.store.audit_items(P, 1)
    assert all(frozen[i]["label"] == truth(i) and frozen[i]["annotators"] == {"ann": truth(i), "bob": truth(i)}
               for i in started["sample"])
    # dora answers 18 of the 20; two disagree with the final label
    wrong = started["sample"][:2]
    for k, item in enumerate(started["sample"][:18]):
        answer(ctx, started, item, "account" if item in wrong and truth(item) != "account" else
               ("billing" if item in wrong else truth(item)), 500 + k)
    rep = audit.report(ctx, P)
    assert (rep["n_answered"], rep["n_errors"], rep["complete"]) == (18, 2, False)
    assert rep["verdict"] == "systemic" and rep["accuracy"] == pytest.approx(16 / 18)
    assert sorted(d["item_id"] for d in rep["disagreements"]) == sorted(wrong)
    # the answers are audit evidence: no training label changed, none reported as left out
    counted, outside = labels_that_count(ctx.store, P)
    assert final_labels(ctx.store, P) == before and outside == [] and all(a["annotator"] != "dora" or
                                                                          a["item_id"] >= "i25" for a in counted)
    st = status(ctx, P, sync=False)
    assert st["latest_audit"]["verdict"] == "systemic" and st["latest_audit"]["n_answered"] == 18
    assert st["disputed_by_audit"] == 2 and st["contested"] == 2
    # the disagreements go to an adjudicator, never to the auditor who raised them
    with_dora = adjudicate(ctx, P, "dora")
    assert with_dora["assigned"] == []
    judged = adjudicate(ctx, P, "judge")
    assert sorted(judged["assigned"]) == sorted(wrong)
    assert all(q["audit"] and q["auditors"] == ["dora"] for q in judged["queue"])


def test_an_audit_of_one_round_and_its_errors(ctx):
    with pytest.raises(ConfigError, match=r"round 4 does not exist \(rounds: 1\)"):
        audit.start(ctx, P, "dora", round_id=4)
    with pytest.raises(ConfigError, match="unknown auditor 'zed'"):
        audit.start(ctx, P, "zed")
    with pytest.raises(ConfigError, match="no audit yet"):
        audit.report(ctx, P)
    started = audit.start(ctx, P, "judge", sample=100, round_id=1, stratify="label", seed=3)
    assert len(started["sample"]) == 30 and started["stratify"] == "label"  # the whole round: fewer than 100
    assert audit.report(ctx, P)["verdict"] is None  # nothing answered yet


def test_a_start_that_died_while_publishing_is_finished_not_drawn_again(ctx, monkeypatch):
    calls = {"n": 0}
    real = ctx.ls.import_tasks

    def dies_once(p, rows, progress=None):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("Label Studio went away")
        return real(p, rows, progress)

    monkeypatch.setattr(ctx.ls, "import_tasks", dies_once)
    with pytest.raises(RuntimeError):
        audit.start(ctx, P, "dora", sample=10, seed=5)
    resumed = audit.start(ctx, P, "dora", sample=10, seed=99)
    assert resumed["resumed"] and resumed["audit"] == 1 and resumed["seed"] == 5
    assert ctx.store.audit_numbers(P) == [1]
    assert all(v["task_id"] for v in ctx.store.audit_items(P, 1).values())


def test_an_audit_of_a_release_samples_its_items_with_the_labels_it_published(ctx, tmp_path):
    import hashlib
    import json

    items = [{"id": f"i{n:02d}", "label": "billing", "decided_by": "unanimous", "guideline_version": 1,
              "n_labels": 2, "split": "train", "sha256": "x"} for n in range(20, 30)]
    raw = json.dumps({"items": items}).encode()
    (tmp_path / "manifest.json").write_bytes(raw)
    ctx.store.save_release(P, 1, {"path": str(tmp_path), "manifest_sha256": hashlib.sha256(raw).hexdigest()})
    started = audit.start(ctx, P, "dora", sample=50, release="v1", seed=2)
    # i25-i29 are dora's own; the rest carry the label the release published, not today's
    assert started["sample"] == [f"i{n}" for n in range(20, 25)] and started["scope"]["release"] == "v1"
    assert {v["label"] for v in ctx.store.audit_items(P, started["audit"]).values()} == {"billing"}
    with pytest.raises(ConfigError, match="not both"):
        audit.start(ctx, P, "judge", round_id=1, release="v1")
    with pytest.raises(ConfigError, match="has no release v7"):
        audit.start(ctx, P, "judge", release="v7")
