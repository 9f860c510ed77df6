"""End to end on the real stack: init, three annotators, round 1, annotate through the API, round 2."""

from __future__ import annotations

import json
import shutil
import time

import httpx
import numpy as np
import pytest
from label_studio_sdk import LabelStudio
from typer.testing import CliRunner

from loop.cli.main import app
from loop.core import model as model_lib
from loop.core.dataset import read_items
from loop.core.embeddings import embed_texts
from loop.core.strategies import DEFAULT_STRATEGY
from loop.labels.interface import choice_result
from loop.services.context import Context
from tests.helpers import REPO, cli, cli_fails, login_token

pytestmark = pytest.mark.integration

SAMPLE = REPO / "examples" / "support_tickets.jsonl"
PEOPLE = {"alice": "alice-pass-123", "bob": "bob-pass-1234", "carol": "carol-pass-12"}
SIZE, OVERLAP = 12, 2
runner = CliRunner()


@pytest.fixture(scope="module")
def flow(stack_env, tmp_path_factory):
    """Runs the loop up to round 1 and returns what the tests inspect."""
    ctx = Context(stack_env)
    here = tmp_path_factory.mktemp("flow")
    dev = here / "dev.jsonl"
    dev.write_text("\n".join(SAMPLE.read_text().splitlines()[:80]))
    guidelines = here / "guidelines"  # a copy: the guideline-bump test writes v2 into it
    shutil.copytree(REPO / "guidelines", guidelines)
    init = cli("init", str(SAMPLE), "--label-field", "label", "--guidelines", str(guidelines), "--dev", str(dev))
    added = {name: cli("annotators", "add", name, "--password", pw) for name, pw in PEOPLE.items()}
    round1 = cli("next-round", "--size", str(SIZE), "--annotators", "alice,bob,carol", "--overlap", str(OVERLAP))
    truth = {i.id: i.label for i in read_items(SAMPLE, label_field="label")}
    return {"ctx": ctx, "p": init["project_id"], "init": init, "added": added, "round1": round1, "truth": truth,
            "guidelines": guidelines}


def queue_items(ctx, p: int, name: str) -> dict[str, int]:
    """item id -> task id of every task in `name`'s queue, as Label Studio lists them."""
    return ctx.ls.task_item_ids(ctx.store.queues(p)[name]["ls_project"])


def annotate_round(flow, n: int, *, only: str | None = None, limit: int | None = None) -> int:
    """Each annotator labels their items of round n, in their queue, with the true label, through the API."""
    ctx, p = flow["ctx"], flow["p"]
    done = flow.setdefault("done", set())
    made = 0
    for name, given in round_items(ctx, p, n).items():
        if only and name != only:
            continue
        client = annotator_client(ctx, name)
        tasks = queue_items(ctx, p, name)
        for item in given[:limit]:
            if (name, item) in done:
                continue
            done.add((name, item))
            client.annotations.create(id=tasks[item], result=choice_result(flow["truth"][item]))
            made += 1
    return made


def round_items(ctx, p: int, n: int) -> dict[str, list[str]]:
    """annotator -> their items in round n."""
    out: dict[str, list[str]] = {}
    for item, people in ctx.store.round_assignments(p, n).items():
        for name in people:
            out.setdefault(name, []).append(item)
    return out


def annotator_client(ctx, name: str, password: str | None = None) -> LabelStudio:
    token = login_token(ctx.settings.ls_url, f"{name}@loop.local", password or PEOPLE[name])
    return LabelStudio(base_url=ctx.settings.ls_url, api_key=token)


def test_init_imports_embeds_and_connects(flow):
    ctx, p, init = flow["ctx"], flow["p"], flow["init"]
    assert init["items"] == 400 and init["imported"] == 400 and init["embedded"] == 400
    assert init["guideline_version"] == 1 and init["dev_items"] == 80
    assert len(ctx.store.items(p)) == 400
    assert len(ctx.ls.task_item_ids(p)) == 400
    backends = ctx.ls.http.get("/api/ml", params={"project": p}).json()
    assert [b["url"] for b in backends] == [ctx.settings.backend_url]
    # Re-running init on the same file embeds and imports nothing new.
    again = cli("init", str(SAMPLE), "--label-field", "label", "--guidelines", str(flow["guidelines"]))
    assert (again["project_id"], again["imported"], again["embedded"]) == (p, 0, 0)


def test_annotators_can_log_in(flow):
    ctx = flow["ctx"]
    for name, pw in PEOPLE.items():
        token = login_token(ctx.settings.ls_url, f"{name}@loop.local", pw)
        me = httpx.get(f"{ctx.settings.ls_url}/api/current-user/whoami", headers={"Authorization": f"Token {token}"})
        assert me.json()["email"] == f"{name}@loop.local"
        assert me.json()["id"] == flow["added"][name]["ls_user_id"]


def test_round1_assigns_items_to_overlap_annotators(flow):
    ctx, p, r1 = flow["ctx"], flow["p"], flow["round1"]
    assert r1["status"] == "open" and r1["strategy"] == "cold-start" and r1["size"] == SIZE
    assignments = ctx.store.round_assignments(p, 1)
    assert len(assignments) == SIZE
    assert all(len(set(people)) == OVERLAP for people in assignments.values())
    loads = r1["items_per_annotator"]
    assert sum(loads.values()) == SIZE * OVERLAP and max(loads.values()) - min(loads.values()) <= 1
    task_of = {i: v["task_id"] for i, v in ctx.store.items(p).items()}
    assert set(ctx.store.assigned(p)) == set(assignments)
    # Each annotator's queue is a Label Studio project of its own holding exactly their items, with
    # nothing pre-ticked; the main project neither pre-ticks.
    assert ctx.ls.project(p)["show_collab_predictions"] is False
    for name, given in r1["assignments"].items():
        mine = [i for i, people in assignments.items() if name in people]
        queue = r1["queues"][name]["ls_project"]
        assert queue == given["queue"] != p
        assert set(ctx.ls.task_item_ids(queue)) == set(mine)
        queue_project = ctx.ls.project(queue)
        assert queue_project["show_collab_predictions"] is False and queue_project["title"].endswith(f" · {name}")
        # --json says who got which item, by item id and task id (for scripts that notify or audit)
        assert given["items"] == mine and given["main_tasks"] == [task_of[i] for i in mine]
        assert given["tasks"] == [ctx.ls.task_item_ids(queue)[i] for i in mine]
        hooks = ctx.ls.http.get("/api/webhooks/", params={"project": queue}).json()
        assert [h["url"] for h in hooks] == [f"{ctx.settings.backend_url}/webhook?project={p}&ls_project={queue}"]
    past = cli("status", "--round", "1")
    assert past["assignments"] == r1["assignments"] and past["id"] == 1 and "scores" not in past


def test_round2_waits_for_owed_labels_then_learns(flow):
    ctx, p = flow["ctx"], flow["p"]
    annotate_round(flow, 1, only="alice", limit=2)
    owed = cli_fails("next-round", "--size", str(SIZE), "--annotators", "alice,bob,carol", "--overlap", "2")
    assert "round 1 is not finished" in owed and "bob owes" in owed and "alice owes" in owed
    assert ctx.store.round_numbers(p) == [1]

    annotate_round(flow, 1)  # everyone finishes what they owe
    round2 = cli("next-round", "--size", str(SIZE), "--annotators", "alice,bob,carol", "--overlap", "2")
    assert round2["id"] == 2 and round2["strategy"] == DEFAULT_STRATEGY and round2["model_version"]
    version = round2["model_version"]  # the trainer may have published versions from webhooks before
    assert ctx.store.round(p, 1)["status"] == "closed"
    closing = round2["closed_previous"]  # everyone gave the true label: full agreement, nothing contested
    assert closing["round"] == 1 and closing["contested"] == 0
    assert closing["agreement"]["percent"] == 1.0 and closing["agreement"]["items"] == SIZE

    round1_items = set(ctx.store.round_assignments(p, 1))
    round2_items = set(ctx.store.round_assignments(p, 2))
    assert len(round2_items) == SIZE and not round1_items & round2_items

    annotations = ctx.store.annotations(p)
    assert {a["annotator"] for a in annotations.values()} == set(PEOPLE)
    assert all(a["guideline_version"] == 1 for a in annotations.values())
    assert {a["item_id"] for a in annotations.values()} == round1_items

    # Predictions on round-2 tasks carry the round's model version and its confidence as score.
    snap = ctx.store.load_model(p, version)
    clf = model_lib.restore(snap)
    items = ctx.store.items(p)
    text_of = {i.id: i.text for i in read_items(SAMPLE)}
    preds = {pr["task"]: pr for pr in ctx.ls.predictions(p) if pr["model_version"] == version}
    assert {items[i]["task_id"] for i in round2_items} == set(preds)
    ordered = sorted(round2_items)
    X, new = embed_texts([text_of[i] for i in ordered], ctx.cache, ctx.embedder)
    assert new == 0  # embedded once, at init
    expected = clf.predict_proba(X).max(axis=1)
    got = np.array([preds[items[i]["task_id"]]["score"] for i in ordered])
    assert np.allclose(got, expected, atol=1e-6)

    status = cli("status")
    assert status["labels_spent"] == SIZE * OVERLAP
    assert [r["id"] for r in status["rounds"]] == [1, 2]
    assert sum(status["class_balance"].values()) == SIZE


def test_sync_is_idempotent_and_webhooks_reach_the_backend(flow, monkeypatch):
    from loop.services.sync import sync_annotations

    ctx, p = flow["ctx"], flow["p"]
    exports = []
    export = ctx.ls.export_tasks
    monkeypatch.setattr(ctx.ls, "export_tasks", lambda project: exports.append(project) or export(project))
    assert sync_annotations(ctx.store, ctx.ls, p) == {"added": 0, "updated": 0, "removed": 0}
    assert exports == []  # an earlier sync set the mark: only changed tasks are read, and the counts agree
    assert ctx.store.event_count(p) >= SIZE * OVERLAP  # Label Studio called /webhook for each annotation


def test_backend_serves_the_current_model(flow):
    ctx, p = flow["ctx"], flow["p"]
    settle(ctx, p)
    url = ctx.settings.backend_url
    current = ctx.store.current_model_version(p)
    assert httpx.post(f"{url}/setup", json={"project": p}, timeout=30).status_code == 401  # login required
    auth = ctx.settings.backend_auth
    setup = httpx.post(f"{url}/setup", json={"project": f"{p}.123"}, auth=auth, timeout=30)
    assert setup.json()["model_version"] == current
    task = {"id": 1, "data": {"text": "I was charged twice for my order"}}
    body = httpx.post(f"{url}/predict", json={"tasks": [task], "project": f"{p}.123"}, auth=auth, timeout=30).json()
    (result,) = body["results"]
    assert result["model_version"] == current and 0 < result["score"] <= 1
    assert result["result"][0]["value"]["choices"][0] in flow["init"]["labels"]


def test_crash_after_planning_resumes_without_assigning_twice(flow, monkeypatch):
    from loop.workflows import rounds

    ctx, p = flow["ctx"], flow["p"]
    annotate_round(flow, 2)

    def crash(*args, **kwargs):
        raise RuntimeError("killed")

    with monkeypatch.context() as m:
        m.setattr(rounds, "_publish", crash)
        with pytest.raises(RuntimeError):
            rounds.next_round(ctx, p, size=5, annotators=["alice", "bob"], overlap=1)
    planned = ctx.store.round(p, 3)
    assert planned["status"] == "planned"
    items3 = set(ctx.store.round_assignments(p, 3))
    resumed = rounds.next_round(ctx, p, size=5, annotators=["alice", "bob"], overlap=1)
    assert resumed["resumed"] and resumed["id"] == 3 and resumed["status"] == "open"
    assert set(ctx.store.round_assignments(p, 3)) == items3
    assert ctx.store.round_numbers(p) == [1, 2, 3]


def test_annotations_retrain_the_backend_without_a_round(flow):
    """Annotate through Label Studio; its webhook queues, the trainer publishes, /predict serves it."""
    ctx, p = flow["ctx"], flow["p"]
    before = ctx.store.current_model_version(p)
    assert annotate_round(flow, 3, only="alice") > 0
    deadline = time.monotonic() + 60
    while ctx.store.current_model_version(p) == before and time.monotonic() < deadline:
        time.sleep(0.5)
    settle(ctx, p)  # the burst may be more than one retrain: compare with the last
    after = ctx.store.current_model_version(p)
    assert after != before
    url = ctx.settings.backend_url
    auth = ctx.settings.backend_auth
    assert httpx.post(f"{url}/setup", json={"project": p}, auth=auth, timeout=30).json()["model_version"] == after
    task = {"id": 1, "data": {"text": "My parcel never arrived"}}
    (result,) = httpx.post(f"{url}/predict", json={"tasks": [task], "project": p}, auth=auth,
                           timeout=30).json()["results"]
    assert result["model_version"] == after
    labelled = {a["item_id"] for a in ctx.store.annotations(p).values() if a["annotator"] == "alice"}
    assert set(ctx.store.round_assignments(p, 3)) & labelled  # webhooks put alice's round-3 labels in the store


def settle(ctx, p, timeout: float = 60) -> None:
    """Wait until the trainer has handled every webhook event (so the model version stays put)."""
    deadline = time.monotonic() + timeout
    while ctx.store.backlog(p) and time.monotonic() < deadline:
        time.sleep(0.3)
    time.sleep(1.0)  # the last retrain publishes just after its events are read
    assert ctx.store.backlog(p) == 0


def test_predictions_push_in_bulk_and_prune_old_versions(flow):
    ctx, p = flow["ctx"], flow["p"]
    settle(ctx, p)
    current = ctx.store.current_model_version(p)
    pushed = cli("predictions", "push")
    assert pushed["model_version"] == current and pushed["pushed"] > 300
    again = cli("predictions", "push")
    assert again["pushed"] == 0  # idempotent per model version
    versions = {pr["model_version"] for pr in ctx.ls.predictions(p)}
    assert current in versions and len(versions) > 1  # rounds left older versions behind
    pruned = cli("predictions", "prune")
    assert pruned["deleted"] > 0
    remaining = ctx.ls.predictions(p)
    assert {pr["model_version"] for pr in remaining} == {current}
    assert len({pr["task"] for pr in remaining}) == len(remaining)  # one prediction per task
    assert ctx.ls.project(p)["model_version"] == current


def test_unknown_label_in_an_annotation_is_a_clear_error(flow):
    ctx, p = flow["ctx"], flow["p"]
    task_id = ctx.store.items(p)[sorted(ctx.store.round_assignments(p, 3))[0]]["task_id"]
    ann = ctx.ls.sdk.annotations.create(id=task_id, result=choice_result("not_a_label"))
    try:
        out = cli_fails("status")
        assert "not_a_label" in out and "not one of" in out
    finally:
        ctx.ls.sdk.annotations.delete(id=ann.id)
    assert cli("status")["project_id"] == p


def test_wrong_token_and_stack_state(flow, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_USER_TOKEN", "0" * 40)
    out = cli_fails("status")
    assert "refused the API token" in out
    monkeypatch.delenv("LABEL_STUDIO_USER_TOKEN")
    services = cli("ps")
    assert all(s["healthy"] for s in services)
    again = cli("up")  # a second `up` is harmless: same PIDs
    assert [s["pid"] for s in again] == [s["pid"] for s in services]


def test_learning_curve_stop_advice_and_budget(flow, tmp_path):
    png = tmp_path / "curve.png"
    status = cli("status", "--plot", str(png))
    curve = status["learning_curve"]
    assert [c["round"] for c in curve] == [2, 3]  # rounds that trained a model
    assert curve[0]["kappa"] is None and curve[1]["kappa"] is not None  # round 3 compares v2 with v1
    assert all(0 <= c["dev_accuracy"] <= 1 and 0 <= c["dev_macro_f1"] <= 1 for c in curve)
    assert status["stop"]["recommend"] is False and "rounds so far" in status["stop"]["kappa"]["reason"]
    assert png.read_bytes()[:4] == b"\x89PNG"

    spent = status["labels_spent"]
    out = cli_fails("next-round", "--annotators", "alice,bob", "--overlap", "1", "--close-incomplete",
                    "--budget", str(spent))
    assert "budget" in out and "spent" in out
    assert cli("status")["budget"] == spent
    small = cli("next-round", "--annotators", "alice,bob", "--overlap", "2", "--budget", str(spent + 6))
    assert small["size"] == 3  # shrunk to fit: 3 items x 2 labels = the 6 labels left


def label_in_queue(flow, name: str, item: str, label: str, password: str | None = None) -> int:
    """`name` labels `item` in their own queue, through the API with their own login; the annotation id."""
    ctx = flow["ctx"]
    task = queue_items(ctx, flow["p"], name)[item]
    return annotator_client(ctx, name, password).annotations.create(id=task, result=choice_result(label)).id


def test_disagreement_is_contested_and_the_adjudicator_decides(flow):
    """Round 4 (the budget test's) sent 3 items to alice and bob: they split on two of them."""
    from loop.workflows.training import final_labels

    ctx, p = flow["ctx"], flow["p"]
    tie, agreed, other = sorted(ctx.store.round_assignments(p, 4))
    for name, label in (("alice", "billing"), ("bob", "delivery")):
        label_in_queue(flow, name, tie, label)
    for name in ("alice", "bob"):
        label_in_queue(flow, name, agreed, "billing")
    for name, label in (("alice", "account"), ("bob", "technical")):
        label_in_queue(flow, name, other, label)
    status = cli("status")
    assert status["contested"] == 2
    report = cli("agreement", "--round", "4")
    assert report["percent_agreement"]["value"] == pytest.approx(1 / 3)  # the planted disagreement shows
    assert ["billing", "delivery"] in [c["labels"] for c in report["confusions"]]

    # carol was not sent the item: her label (in the main project) is reported and left out until accepted
    main_task = ctx.store.items(p)[tie]["task_id"]
    carol = annotator_client(ctx, "carol").annotations.create(id=main_task, result=choice_result("billing")).id
    status = cli("status")
    assert [(o["id"], o["annotator"]) for o in status["labels_outside"]] == [(str(carol), "carol")]
    assert status["contested"] == 2 and final_labels(ctx.store, p)[tie] in {"billing", "delivery"}
    accepted = cli("accept", str(carol))
    assert [a["id"] for a in accepted["accepted"]] == [str(carol)] and accepted["still_outside"] == 0
    assert final_labels(ctx.store, p)[tie] == "billing"  # now 2 to 1, still contested

    cli("annotators", "add", "dana", "--password", "dana-pass-123")
    result = cli("adjudicate", "--adjudicator", "dana")
    assert result["assigned"] == [other, tie]  # the even split first
    assert set(ctx.ls.task_item_ids(result["ls_project"])) == {other, tie}  # dana's queue holds them
    label_in_queue(flow, "dana", other, "account", password="dana-pass-123")  # her ruling is final
    cli("status")  # syncs
    assert final_labels(ctx.store, p)[other] == "account"
    assert other not in [q["item_id"] for q in cli("adjudicate", "--adjudicator", "dana")["queue"]]


def test_guideline_bump_stamps_new_labels_with_the_new_version(flow, tmp_path):
    ctx, p = flow["ctx"], flow["p"]
    edited = tmp_path / "edited.md"
    edited.write_text((flow["guidelines"] / "v1.md").read_text().replace(
        "## Purpose", "## Purpose\n\nNew in v2: a refund for an undelivered parcel is billing.\n", 1))
    bumped = cli("guidelines", "bump", str(edited), "--note", "refund vs delivery rule", "--dir",
                 str(flow["guidelines"]))
    assert bumped["version"] == 2 and bumped["project"]["guideline_version"] == 2
    assert "New in v2" in ctx.ls.project(p)["expert_instruction"]
    for queue in ctx.store.queues(p).values():  # the annotators read the new version in their queues too
        assert "New in v2" in ctx.ls.project(queue["ls_project"])["expert_instruction"]
    assert "refund vs delivery rule" in (flow["guidelines"] / "CHANGELOG.md").read_text()

    round5 = cli("next-round", "--annotators", "alice,bob", "--overlap", "1", "--size", "2", "--close-incomplete",
                 "--budget", "100000")
    (item,) = round5["assignments"]["bob"]["items"]
    label_in_queue(flow, "bob", item, "billing")
    status = cli("status")
    stamps = {a["guideline_version"] for a in ctx.store.annotations(p).values() if a["item_id"] == item}
    assert stamps == {2}
    assert any("mix guideline versions" in w for w in status["warnings"])
    assert {a["guideline_version"] for a in ctx.store.annotations(p).values()} == {1, 2}  # old stamps kept


def test_the_trainer_keeps_to_the_guideline_version_next_round_trained_on(flow):
    """`next-round --guideline-version 2` records the policy; the trainer's next retrain (after a
    webhook) trains on the v2 labels only instead of on every label."""
    from loop.workflows.training import set_policy

    ctx, p = flow["ctx"], flow["p"]
    settle(ctx, p)
    round6 = cli("next-round", "--annotators", "alice,bob", "--overlap", "1", "--size", "2", "--close-incomplete",
                 "--guideline-version", "2")
    status = cli("status")
    assert status["training_policy"]["guideline_version"] == 2 and status["training_items"] == 1  # bob's v2 label
    before = ctx.store.current_model_version(p)
    (item,) = round6["assignments"]["alice"]["items"]
    label_in_queue(flow, "alice", item, "delivery")  # a second v2 label, of a second class
    deadline = time.monotonic() + 60
    while ctx.store.current_model_version(p) == before and time.monotonic() < deadline:
        time.sleep(0.5)
    settle(ctx, p)
    assert ctx.store.load_model(p).n_labels == 2  # not the 30-odd labels of every version
    set_policy(ctx.store, p, guideline_version=None)  # back to every label for the tests that follow


def test_state_survives_a_restart_of_every_process(flow):
    settle(flow["ctx"], flow["p"])  # a retrain still under way would rightly publish after the restart
    before = cli("status")
    stopped = cli("down")["stopped"]
    on_postgres = {"postgres"} if flow["ctx"].settings.label_studio_db == "postgres" else set()  # make test-postgres
    assert set(stopped) == {"redis", "label-studio", "ml-backend", "trainer"} | on_postgres
    assert not any(s["healthy"] for s in json.loads(runner.invoke(app, ["ps", "--json"]).stdout))
    cli("up")
    after = cli("status")
    for key in ("labels_spent", "rounds", "class_balance", "model_version", "budget", "learning_curve"):
        assert after[key] == before[key], key


def test_validate_and_export_the_project_with_its_data_card(flow, tmp_path):
    """The labels made through Label Studio above: validated, exported, and described by the card."""
    import pyarrow.parquet as pq
    import yaml

    from loop.workflows.training import final_labels, labels_that_count

    ctx, p = flow["ctx"], flow["p"]
    settle(ctx, p)
    result = runner.invoke(app, ["validate", "--json"])
    report = json.loads(result.stdout)
    assert result.exit_code == (2 if report["blockers"] else 0), result.output
    final = final_labels(ctx.store, p)
    assert report["n_items"] == len(final) and report["source"] == f"project {p}"
    assert report["checks"]["invalid_labels"]["status"] == "ok"
    assert report["checks"]["missing_negatives"]["negatives"] == ["out_of_scope"]  # from the guidelines

    out = tmp_path / "export"
    summary = cli("export", str(out), "--format", "parquet", "--with-annotations", "--allow-contradictions")
    rows = pq.read_table(out / "train.parquet").to_pylist() + pq.read_table(out / "test.parquet").to_pylist()
    assert summary["rows"] == len(rows) == len(final)
    assert {r["id"]: r["label"] for r in rows} == final
    assigned = ctx.store.assigned(p)  # item -> the round that selected it (labels made outside rounds: none)
    assert {r["id"]: r["round"] for r in rows} == {i: assigned.get(i) for i in final}
    assert any(r["round"] is not None for r in rows)
    by_item: dict[str, int] = {}
    for a in labels_that_count(ctx.store, p)[0]:
        if a["label"] is not None:
            by_item[a["item_id"]] = by_item.get(a["item_id"], 0) + 1
    assert all(len(r["annotations"]) == by_item[r["id"]] for r in rows)

    card = (out / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["task_categories"] == ["text-classification"]
    section = card.split("## Annotators")[1].split("\n## ")[0]
    listed = [name for name in PEOPLE if f"| {name} |" in section]  # one reliability row per annotator
    assert listed == list(PEOPLE) and f"{len(listed)} annotators" in section
    assert f"{len(final)} labelled items" in card
    assert "## Guidelines" in card and "out_of_scope" in card
    assert (out / "learning_curve.png").stat().st_size > 1000
    assert json.loads((out / "validation.json").read_text())["n_items"] == len(final)
