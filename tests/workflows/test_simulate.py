"""`loop simulate`: simulated annotators, the shared code path, and a real-data check that margin beats random."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from loop.errors import ConfigError
from loop.workflows.simulate import (
    SimConfig,
    _answer,
    budgets,
    labels_to_reach,
    learning_curve_area,
    legend_label,
    run_once,
    simulate,
    simulated_answers,
    summarise,
    value_at,
)
from tests.helpers import REPO, shared_data


def blobs(n_per_class: int, classes: int, seed: int, spread: float = 1.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(classes, 8))
    X = np.vstack([c + rng.normal(scale=spread, size=(n_per_class, 8)) for c in centres])
    y = np.repeat([f"c{i}" for i in range(classes)], n_per_class)
    return X, y


def test_simulated_annotators_err_at_their_rate():
    rng = np.random.default_rng(0)
    classes = np.array(["a", "b", "c"])
    answers = [_answer("a", 0.3, classes, rng) for _ in range(4000)]
    wrong = np.mean([a != "a" for a in answers])
    assert 0.27 < wrong < 0.33
    assert {a for a in answers if a != "a"} == {"b", "c"}
    assert all(_answer("b", 0.0, classes, rng) == "b" for _ in range(100))


def test_a_run_respects_the_budget_and_records_a_curve():
    X, y = blobs(60, 4, seed=1)
    X_test, y_test = blobs(20, 4, seed=1)
    cfg = SimConfig(strategies=["margin"], batch=10, budget=90, seeds=1, annotators=3, overlap=2,
                    annotator_error=[0.0])
    run = run_once(X, y, X_test, y_test, "margin", 0, cfg)
    spent = [labels for labels, _ in run["curve"]]
    assert spent == sorted(spent) and spent[-1] <= 90
    assert spent[-1] == 90 - 90 % 2  # the last round shrinks to fit the budget exactly
    assert all(0 <= acc <= 1 for _, acc in run["curve"])
    assert run["label_noise"] == 0.0


def test_noisy_annotators_with_overlap_and_majority_vote_reduce_noise():
    X, y = blobs(80, 3, seed=2)
    cfg_one = SimConfig(strategies=["random"], batch=20, budget=200, seeds=1, annotators=1, overlap=1,
                        annotator_error=[0.3])
    cfg_three = SimConfig(strategies=["random"], batch=20, budget=600, seeds=1, annotators=3, overlap=3,
                          annotator_error=[0.3])
    one = run_once(X, y, X, y, "random", 0, cfg_one)["label_noise"]
    three = run_once(X, y, X, y, "random", 0, cfg_three)["label_noise"]
    assert three < one  # majority of three 30%-noisy votes is wrong ~22% of the time, one vote 30%


def test_labels_to_reach():
    curve = [(10, 0.5), (20, 0.7), (30, 0.9)]
    assert labels_to_reach(curve, 0.7) == 20
    assert labels_to_reach(curve, 0.95) is None


def test_learning_curve_area_holds_the_last_accuracy_and_is_normalised_by_the_budget():
    # 0 until the first model at 10 labels, then 0.5 for 10 labels, 0.8 for the last 20
    assert learning_curve_area([(10, 0.5), (20, 0.8)], 40) == pytest.approx((10 * 0.5 + 20 * 0.8) / 40)
    assert learning_curve_area([(10, 0.5), (20, 0.8), (60, 1.0)], 40) == pytest.approx(0.525)  # beyond: ignored
    assert learning_curve_area([(0, 0.7)], 100) == pytest.approx(0.7)
    assert learning_curve_area([], 100) == 0.0
    # earlier gains, same end point: a larger area
    assert learning_curve_area([(10, 0.8), (40, 0.8)], 40) > learning_curve_area([(10, 0.2), (40, 0.8)], 40)


def _run(strategy: str, seed: int, curve: list[tuple[int, float]]) -> dict:
    return {"arm": strategy, "strategy": strategy, "relabel": "off", "seed": seed, "curve": curve,
            "label_curve": [(s, 1.0) for s, _ in curve], "stop": None, "relabelled": 0, "label_noise": 0.0}


def test_summary_gives_ratios_to_random_and_to_margin_and_the_area_per_seed():
    # full accuracy 1.0: 95% / 98% reached at the first point >= 0.95 / 0.98
    runs = [_run("margin", 0, [(10, 0.9), (20, 0.96), (30, 0.99), (40, 0.99)]),
            _run("margin", 1, [(10, 0.9), (20, 0.9), (30, 0.96), (40, 0.99)]),
            _run("random", 0, [(10, 0.5), (20, 0.9), (30, 0.96), (40, 0.99)]),
            _run("random", 1, [(10, 0.5), (20, 0.9), (30, 0.96), (40, 0.99)]),
            _run("other", 0, [(10, 0.96), (20, 0.99), (30, 0.99), (40, 0.99)]),
            _run("other", 1, [(10, 0.96), (20, 0.96), (30, 0.99), (40, 0.99)])]
    out = summarise(runs, 1.0, ["margin", "random", "other"], [10, 20, 30, 40])["strategies"]
    assert out["margin"]["labels_to_98_per_seed"] == [30, 40] and out["margin"]["labels_to_98"] == 35
    assert out["other"]["labels_to_95"] == 10 and out["other"]["labels_to_98"] == 25
    assert out["other"]["labels_to_98_ratio_to_margin"] == pytest.approx(25 / 35, abs=1e-3)
    assert out["other"]["labels_to_98_ratio_to_random"] == pytest.approx(25 / 40, abs=1e-3)
    assert out["other"]["labels_to_95_ratio_to_margin"] == pytest.approx(10 / 25, abs=1e-3)
    assert out["margin"]["labels_to_98_ratio_to_margin"] == 1.0
    assert out["random"]["labels_to_98_ratio_to_margin"] == pytest.approx(40 / 35, abs=1e-3)
    assert out["margin"]["auc_per_seed"] == [pytest.approx((0.9 + 0.96 + 0.99) * 10 / 40, abs=1e-4),
                                             pytest.approx((0.9 + 0.9 + 0.96) * 10 / 40, abs=1e-4)]
    assert out["other"]["auc"] > out["margin"]["auc"] > out["random"]["auc"]
    label = legend_label("other", out["other"])
    assert "98% at 25" in label and "0.62x random" in label and "0.71x margin" in label and "AUC 0.7" in label
    assert "x margin" not in legend_label("margin", out["margin"])


def test_without_margin_among_the_arms_there_is_no_ratio_to_margin():
    runs = [_run("random", 0, [(10, 0.5), (20, 0.99)]), _run("other", 0, [(10, 0.99), (20, 0.99)])]
    out = summarise(runs, 1.0, ["random", "other"], [10, 20])["strategies"]
    assert out["other"]["labels_to_98_ratio_to_margin"] is None
    assert out["other"]["labels_to_98_ratio_to_random"] == 0.5
    assert "margin" not in legend_label("other", out["other"])


def test_answers_drawn_up_front_err_at_each_rate_and_spammers_answer_at_random():
    classes = np.array(["a", "b", "c", "d"])
    y = np.array(["a", "b", "c", "d"] * 2500)
    answers = simulated_answers(y, classes, [0.0, 0.2, 0.5], spammers=1, rng=np.random.default_rng(0))
    wrong = (answers != y[:, None]).mean(axis=0)
    assert wrong[0] == 0.0 and 0.18 < wrong[1] < 0.22
    assert 0.72 < wrong[2] < 0.78  # the spammer: right one time in four, whatever its error rate
    assert set(np.unique(answers[:, 1][answers[:, 1] != y])) == set(classes)
    again = simulated_answers(y, classes, [0.0, 0.2, 0.5], spammers=1, rng=np.random.default_rng(0))
    assert (again == answers).all()  # one seed, one crowd: relabel on and off face the same answers


def test_relabel_auto_buys_better_training_labels_from_noisy_annotators_within_the_budget():
    X, y = blobs(150, 4, seed=3, spread=1.5)
    X_test, y_test = blobs(50, 4, seed=3, spread=1.5)
    cfg = SimConfig(strategies=["margin"], batch=20, budget=300, annotators=3, overlap=2, annotator_error=[0.25])
    gains = []
    for seed in range(3):
        off = run_once(X, y, X_test, y_test, "margin", seed, cfg, relabel="off")
        auto = run_once(X, y, X_test, y_test, "margin", seed, cfg, relabel="auto")
        assert off["relabelled"] == 0 < auto["relabelled"]
        assert auto["curve"][-1][0] <= 300 and [s for s, _ in auto["label_curve"]] == [s for s, _ in auto["curve"]]
        gains.append(value_at(auto["label_curve"], 300) - value_at(off["label_curve"], 300))
    assert np.mean(gains) > 0.03, gains  # a third label settles a split pair more often than a new pair is right


def test_arms_are_compared_at_common_budgets():
    cfg = SimConfig(strategies=["margin", "random"], batch=10, budget=95, overlap=2, relabel=["auto", "off"])
    assert budgets(cfg) == [20, 40, 60, 80, 95]
    assert cfg.arm("margin", "auto") == "margin, relabel auto"
    assert SimConfig(strategies=["margin"]).arm("margin", "off") == "margin"
    curve = [(20, 0.5), (39, 0.6), (58, 0.7)]
    assert [value_at(curve, b) for b in (10, 20, 40, 60)] == [None, 0.5, 0.6, 0.7]
    with pytest.raises(ConfigError, match="--spammers"):
        SimConfig(strategies=["margin"], annotators=2, spammers=2).check()
    with pytest.raises(ConfigError, match="--relabel"):
        SimConfig(strategies=["margin"], relabel=["sometimes"]).check()


def test_simulate_reports_each_relabel_mode_with_its_training_label_accuracy():
    X, y = blobs(60, 3, seed=4)
    cfg = SimConfig(strategies=["margin", "random"], batch=10, budget=80, seeds=2, annotators=3, overlap=2,
                    annotator_error=[0.1, 0.2], spammers=1, relabel=["auto", "off"])
    out = simulate(X, y, X, y, cfg)
    assert set(out["strategies"]) == {"margin, relabel auto", "margin, relabel off", "random, relabel auto",
                                      "random, relabel off"}
    for entry in out["strategies"].values():
        assert entry["labels"] and len(entry["label_accuracy_mean"]) == len(entry["labels"])
        assert all(0 <= v <= 1 for v in entry["label_accuracy_mean"])
    assert out["strategies"]["margin, relabel off"]["relabelled_mean"] == 0
    assert out["config"]["spammers"] == 1 and out["config"]["relabel"] == ["auto", "off"]


@pytest.mark.realdata
def test_margin_beats_random_on_a_slice_of_trec(tmp_path):
    folder = shared_data("trec")
    from loop.core.dataset import read_items
    from loop.core.embeddings import Embedder, embed_texts
    from loop.services.vectors import EmbeddingCache

    pool = read_items(folder / "train.jsonl", label_field="label")[:1500]
    test = read_items(folder / "test.jsonl", label_field="label")
    cache, embedder = EmbeddingCache(tmp_path / "cache.sqlite"), Embedder()
    X, _ = embed_texts([i.text for i in pool], cache, embedder)
    X_test, _ = embed_texts([i.text for i in test], cache, embedder)
    cfg = SimConfig(strategies=["margin", "random"], batch=20, budget=400, seeds=2, annotators=1, overlap=1)
    result = simulate(X, [i.label for i in pool], X_test, [i.label for i in test], cfg)
    area = {name: float(np.mean(e["accuracy_mean"])) for name, e in result["strategies"].items()}
    assert area["margin"] > area["random"], area


def test_cli_simulate_writes_json_and_a_plot(tmp_path, monkeypatch):
    """The command end to end on the bundled sample, with the real embedding model."""
    from loop.cli.main import app
    from loop.core.dataset import read_items

    rows = [json.loads(line) for line in (REPO / "examples" / "support_tickets.jsonl").read_text().splitlines()]
    (tmp_path / "pool.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:300]))
    (tmp_path / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows[300:]))
    monkeypatch.setenv("LOOP_WORKSPACE", str(tmp_path / "ws"))
    png = tmp_path / "curve.png"
    result = CliRunner().invoke(app, ["simulate", str(tmp_path / "pool.jsonl"), "--test", str(tmp_path / "test.jsonl"),
                                      "--strategy", "margin-diverse,random", "--batch", "20", "--budget", "120",
                                      "--seeds", "2", "--plot", str(png), "--relabel", "auto,off", "--spammers", "1",
                                      "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    arms = {f"{s}, relabel {m}" for s in ("margin-diverse", "random") for m in ("auto", "off")}
    assert set(out["strategies"]) == arms
    assert all(e["label_accuracy_mean"] for e in out["strategies"].values())
    assert out["config"]["pool"] == 300 and 0 < out["full_data_accuracy"] <= 1
    for entry in out["strategies"].values():
        assert 0 < entry["auc"] <= 1 and len(entry["auc_per_seed"]) == 2
        assert "labels_to_98_ratio_to_margin" in entry and "labels_to_98_ratio_to_random" in entry
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    assert len(read_items(tmp_path / "pool.jsonl")) == 300
