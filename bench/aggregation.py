"""Aggregation methods against the truth: expert gold, and simulated annotator pools in loop's regime.

    .venv/bin/python -m bench.aggregation                 # every table, markdown (about 30 minutes on 2 cores)
    .venv/bin/python -m bench.aggregation --json          # the same numbers as JSON
    .venv/bin/python -m bench.aggregation --no-crowd-kit  # loop's methods only (about 2 minutes)

Methods: loop's `aggregate` methods ("majority", "majority-ds", "dawid-skene", "hierarchical-ds")
and, when crowd-kit is installed (Apache-2.0; `pip install crowd-kit==1.4.2`; a benchmark
reference, not a dependency of loop), its classification aggregators with their default settings:
MajorityVote, DawidSkene, OneCoinDawidSkene, GLAD, MACE, Wawa, ZeroBasedSkill, MMSR and KOS (KOS
takes two classes only). crowd-kit 1.4.2's Wawa and ZeroBasedSkill call scikit-learn's
`check_is_fitted`, which scikit-learn >= 1.6 refuses on their estimators; the script swaps in a
plain attribute check for those two.

1. Expert gold (`../shared/data/snow2008_temp`, `snow2008_wsd`: crowd labels and expert labels of
   the same items; the data README lists no other set with gold): for k in --ks, --draws seeded
   draws keep k random labels of each item (draw d of k uses numpy's default_rng([seed, k, d]),
   items in sorted order); accuracy against the gold, mean, sd and worst draw. Also
   hierarchical-ds's mean confidence (`label_accuracy_estimate`) against its real accuracy.
2. Simulated pools with known truth: 3-5 annotators, each item to `overlap` of them with loop's
   own `assign` (load balanced), labels in random order. Annotators: "gNN" right NN% of the time
   (errors spread evenly over the other classes), "spam" a random label, "bias" half the time the
   rarest class and otherwise right 90% of the time. Two classes (even shares) or four (shares
   0.4/0.3/0.2/0.1); 30 ("early rounds": 12-20 labels per annotator), 200 and 2000 items. Then a
   newcomer: in a 200-item project one extra annotator labels only 10 items (a good one, 90%, or a
   spammer). Per setting: accuracy (mean over seeds); the summary gives each method's mean
   accuracy, its mean and worst loss to the best method of each setting, and in how many settings
   it is at least as accurate as the plain vote.
3. hierarchical-ds's settings: both shrinkage strengths at 2-32 pseudo-labels, and the free / the
   anchored class prior alone against the pair chosen by likelihood, on the gold sets and the pools.
4. Annotator reliability on the pools: how often each kind of annotator is flagged "near-chance"
   or "biased", how often the 95% interval holds their real accuracy, and the mean error of the
   estimate; and the training labels' estimated accuracy (mean posterior) against the real one.
5. Speed: `aggregate` on 10,000 items x 2 and x 3 labels (5 annotators, 2, 4 and 6 classes).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from collections import defaultdict
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from loop.core.assign import assign
from loop.labels.aggregation import (
    _encode,
    _fit_hierarchical,
    aggregate,
    annotator_reliability,
    hierarchical_dawid_skene,
    label_accuracy_estimate,
    labels_by_item,
)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
GOLD_SETS = ("snow2008_temp", "snow2008_wsd")
OURS = ("majority", "majority-ds", "dawid-skene", "hierarchical-ds")
CROWD_KIT = ("MajorityVote", "DawidSkene", "OneCoinDawidSkene", "GLAD", "MACE", "Wawa", "ZeroBasedSkill", "MMSR",
             "KOS")
POOLS = {
    "good3": ["g95", "g92", "g90"],
    "good+noisy": ["g95", "g90", "g70"],
    "good+spam": ["g95", "g90", "spam"],
    "good+biased": ["g95", "g90", "bias"],
    "noisy3": ["g80", "g70", "g70"],
    "good4+spam": ["g95", "g92", "g90", "g90", "spam"],
    "mixed5": ["g95", "g90", "g70", "spam", "bias"],
}
SHARES = {2: [0.5, 0.5], 4: [0.4, 0.3, 0.2, 0.1]}


# --------------------------------------------------------------------------------------------
# Data


def load_gold(name: str) -> tuple[dict[str, list[dict]], dict[str, str]]:
    by_item: dict[str, list[dict]] = defaultdict(list)
    for line in (DATA / name / "annotations.jsonl").open(encoding="utf-8"):
        r = json.loads(line)
        by_item[r["item_id"]].append({"item_id": r["item_id"], "annotator": r["annotator"], "label": str(r["label"])})
    gold = {}
    for line in (DATA / name / "items.jsonl").open(encoding="utf-8"):
        r = json.loads(line)
        gold[r["item_id"]] = str(r["label"])
    return dict(by_item), gold


def draw(by_item: dict[str, list[dict]], k: int, rng: np.random.Generator) -> list[dict]:
    """k labels of each item, in the drawn order (so the vote's earliest-label tie-break is random)."""
    out = []
    for item in sorted(by_item):
        recs = by_item[item]
        out += [recs[j] for j in rng.permutation(len(recs))[:k]]
    return out


def answer(kind: str, truth: int, n_cls: int, rng: np.random.Generator) -> int:
    if kind == "spam":
        return int(rng.integers(n_cls))
    if kind == "bias":
        if rng.random() < 0.5:
            return n_cls - 1
        p = 0.9
    else:
        p = int(kind[1:]) / 100
    if rng.random() < p:
        return truth
    others = [c for c in range(n_cls) if c != truth]
    return int(others[rng.integers(len(others))])


def simulate(pool: str, n_items: int, overlap: int, n_cls: int, seed, newcomer: str | None = None,
             newcomer_items: int = 10) -> tuple[list[dict], dict[str, str], dict[str, str]]:
    """(records, truth, annotator -> kind). A newcomer takes one annotator's place on `newcomer_items` items."""
    rng = np.random.default_rng(seed)
    truth = rng.choice(n_cls, size=n_items, p=SHARES.get(n_cls, np.ones(n_cls) / n_cls))
    names = [f"{kind}#{i}" for i, kind in enumerate(POOLS[pool])]
    kinds = {name: name.split("#")[0] for name in names}
    items = [f"i{j:05d}" for j in range(n_items)]
    who = assign(items, names, overlap)
    late = set(rng.choice(n_items, size=newcomer_items, replace=False).tolist()) if newcomer else set()
    if newcomer:
        kinds[f"new-{newcomer}"] = newcomer
    records = []
    for j, item in enumerate(items):
        people = list(who[item])
        if j in late:
            people[int(rng.integers(len(people)))] = f"new-{newcomer}"
        for p in rng.permutation(people):
            records.append({"item_id": item, "annotator": str(p),
                            "label": f"c{answer(kinds[str(p)], int(truth[j]), n_cls, rng)}"})
    return records, {item: f"c{truth[j]}" for j, item in enumerate(items)}, kinds


# --------------------------------------------------------------------------------------------
# Methods


def crowd_kit_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("crowd-kit")
    except Exception:  # noqa: BLE001  (not installed: the crowd-kit columns are left out)
        return None


def _patch_crowd_kit() -> None:
    from crowdkit.aggregation.classification import wawa, zero_based_skill

    def fitted(estimator, attributes=None, **_):
        for name in [attributes] if isinstance(attributes, str) else attributes or []:
            if not hasattr(estimator, name):
                raise RuntimeError(f"{type(estimator).__name__} is not fitted")

    wawa.check_is_fitted = fitted
    zero_based_skill.check_is_fitted = fitted


def run_crowd_kit(name: str, records: list[dict]) -> dict[str, str] | None:
    import pandas as pd
    from crowdkit import aggregation as ck

    if name == "KOS" and len({r["label"] for r in records}) != 2:
        return None
    _patch_crowd_kit()
    df = pd.DataFrame({"task": [r["item_id"] for r in records], "worker": [r["annotator"] for r in records],
                       "label": [r["label"] for r in records]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = getattr(ck, name)()
        if name == "KOS":  # labels must be 0/1 integers
            classes = sorted(df["label"].unique())
            df["label"] = df["label"].map({c: k for k, c in enumerate(classes)})
            return {t: classes[int(v)] for t, v in model.fit_predict(df).items()}
        return {t: str(v) for t, v in model.fit_predict(df).items()}


def score(records: list[dict], truth: dict[str, str], methods: tuple[str, ...]) -> dict[str, dict]:
    """method -> {"accuracy", "seconds"} (accuracy None when the method cannot run on the data)."""
    out = {}
    for m in methods:
        start = time.perf_counter()
        if m in OURS:
            labels = {i: d["label"] for i, d in aggregate(records, m).items()}
        else:
            try:
                labels = run_crowd_kit(m, records)
            except Exception as exc:  # noqa: BLE001  (reported, not fatal)
                out[m] = {"accuracy": None, "seconds": None, "error": f"{type(exc).__name__}: {exc}"[:200]}
                continue
        seconds = time.perf_counter() - start
        acc = None if labels is None else float(np.mean([labels.get(i) == t for i, t in truth.items()]))
        out[m] = {"accuracy": acc, "seconds": seconds}
    return out


# --------------------------------------------------------------------------------------------
# Parts (each task is a pure function of its arguments, so they run in a process pool)


def _gold_task(args) -> dict:
    name, k, d, seed, methods = args
    by_item, gold = load_gold(name)
    sub = draw(by_item, k, np.random.default_rng([seed, k, d]))
    res = score(sub, gold, methods)
    est = label_accuracy_estimate(aggregate(sub, "hierarchical-ds"), "hierarchical-ds")["value"]
    return {"dataset": name, "k": k, "draw": d, "scores": res, "estimated": est}


def _sim_task(args) -> dict:
    pool, n_cls, overlap, n_items, s, newcomer, methods = args
    records, truth, _ = simulate(pool, n_items, overlap, n_cls, [s, n_items, overlap, n_cls, len(pool)], newcomer)
    return {"pool": pool, "classes": n_cls, "overlap": overlap, "items": n_items, "seed": s, "newcomer": newcomer,
            "scores": score(records, truth, methods)}


def _summarise(tasks: list[dict], keys: tuple[str, ...], methods: tuple[str, ...]) -> list[dict]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for t in tasks:
        groups[tuple(t[k] for k in keys)].append(t)
    rows = []
    for key, ts in groups.items():
        row = dict(zip(keys, key))
        row["runs"] = len(ts)
        for m in methods:
            vals = [t["scores"][m]["accuracy"] for t in ts if t["scores"].get(m, {}).get("accuracy") is not None]
            secs = [t["scores"][m]["seconds"] for t in ts if t["scores"].get(m, {}).get("seconds") is not None]
            row[m] = ({"mean": float(np.mean(vals)), "sd": float(np.std(vals)), "min": float(np.min(vals)),
                       "seconds": float(np.mean(secs))} if vals else None)
        if "estimated" in ts[0]:
            row["estimated"] = float(np.mean([t["estimated"] for t in ts]))
        rows.append(row)
    return rows


def regret_summary(rows: list[dict], methods: tuple[str, ...]) -> dict[str, dict]:
    """Per method: mean accuracy, mean and worst loss to the best method of each setting, settings
    where it is at least the plain vote (within 0.0005)."""
    out = {}
    usable = [r for r in rows if all(r.get(m) for m in methods if m != "KOS")]
    for m in methods:
        losses, accs, wins = [], [], 0
        for r in usable:
            if not r.get(m):
                continue
            best = max(r[x]["mean"] for x in methods if r.get(x))
            losses.append(best - r[m]["mean"])
            accs.append(r[m]["mean"])
            wins += r[m]["mean"] >= r["majority"]["mean"] - 0.0005
        if accs:
            out[m] = {"mean_accuracy": float(np.mean(accs)), "mean_loss": float(np.mean(losses)),
                      "worst_loss": float(np.max(losses)), "settings": len(accs), "at_least_majority": wins}
    return out


def sensitivity(seed: int, draws: int, sim_seeds: int) -> dict:
    """hierarchical-ds with other strengths, and with one class-prior fit only."""
    variants = {f"strength {s:g}": dict(strength=s) for s in (2, 4, 8, 16, 32)}
    variants |= {"free prior only": dict(only=False), "anchored prior only": dict(only=True)}

    def run(records, var):
        if "strength" in var:
            model = hierarchical_dawid_skene(records, row_strength=var["strength"], accuracy_strength=var["strength"])
        else:
            from loop.labels.aggregation import ACCURACY_STRENGTH, ROW_STRENGTH

            model = _fit_hierarchical(_encode(labels_by_item(records), None), var["only"], ROW_STRENGTH,
                                      ACCURACY_STRENGTH, 500, 1e-6)
        return {it: model.classes[int(model.posteriors[i].argmax())] for i, it in enumerate(model.items)}

    gold_rows = []
    for name in GOLD_SETS:
        if not (DATA / name).is_dir():
            continue
        by_item, gold = load_gold(name)
        for k in (2, 3, 5, 10):
            row = {"dataset": name, "k": k}
            subs = [draw(by_item, k, np.random.default_rng([seed, k, d])) for d in range(draws)]
            for v, var in variants.items():
                accs = [np.mean([run(sub, var).get(i) == t for i, t in gold.items()]) for sub in subs]
                row[v] = {"mean": float(np.mean(accs)), "min": float(np.min(accs))}
            gold_rows.append(row)
    sim = defaultdict(list)
    for pool in POOLS:
        for n_cls in (2, 4):
            for overlap in (2, 3):
                for n_items in (30, 200):
                    for s in range(sim_seeds):
                        records, truth, _ = simulate(pool, n_items, overlap, n_cls, [s, n_items, overlap, n_cls, 7])
                        for v, var in variants.items():
                            sim[v].append(np.mean([run(records, var)[i] == t for i, t in truth.items()]))
    return {"gold": gold_rows, "pools": {v: float(np.mean(x)) for v, x in sim.items()},
            "pool_runs": len(next(iter(sim.values()))) if sim else 0}


def reliability(seeds: int) -> dict:
    """Flags, interval coverage and estimate error per kind of annotator; label accuracy estimate."""
    per_kind: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    calib = []
    for pool in ("good+noisy", "good+spam", "good+biased", "good4+spam", "mixed5"):
        for n_cls in (2, 4):
            for overlap in (2, 3):
                for n_items in (200, 2000):
                    for s in range(seeds):
                        records, truth, kinds = simulate(pool, n_items, overlap, n_cls, [s, n_items, overlap, 11])
                        decided = aggregate(records)
                        rel = annotator_reliability(records, decided)
                        for ann, r in rel.items():
                            mine = [x for x in records if x["annotator"] == ann]
                            real = float(np.mean([x["label"] == truth[x["item_id"]] for x in mine]))
                            d = per_kind[(kinds[ann], n_cls, overlap)]
                            d["near-chance"].append("near-chance" in r["flags"])
                            d["biased"].append("biased" in r["flags"])
                            d["n_evidence"].append(r["n_evidence"])
                            if r["accuracy_interval"]:
                                lo, hi = r["accuracy_interval"]
                                d["covered"].append(lo <= real <= hi)
                                d["error"].append(r["estimated_accuracy"] - real)
                        real_acc = float(np.mean([decided[i]["label"] == t for i, t in truth.items()]))
                        calib.append({"pool": pool, "classes": n_cls, "overlap": overlap, "items": n_items,
                                      "estimated": label_accuracy_estimate(decided)["value"], "real": real_acc})
    kinds_out = []
    for (kind, n_cls, overlap), d in sorted(per_kind.items()):
        kinds_out.append({"kind": kind, "classes": n_cls, "overlap": overlap, "annotators": len(d["near-chance"]),
                          "labels": float(np.mean(d["n_evidence"])),
                          "near_chance": float(np.mean(d["near-chance"])), "biased": float(np.mean(d["biased"])),
                          "covered": float(np.mean(d["covered"])) if d["covered"] else None,
                          "mean_error": float(np.mean(d["error"])) if d["error"] else None})
    est = np.array([c["estimated"] for c in calib])
    real = np.array([c["real"] for c in calib])
    return {"kinds": kinds_out, "label_accuracy": {"runs": len(calib), "mean_estimated": float(est.mean()),
                                                   "mean_real": float(real.mean()),
                                                   "mean_abs_error": float(np.abs(est - real).mean()),
                                                   "worst_error": float((est - real)[np.abs(est - real).argmax()])}}


def speed() -> list[dict]:
    rows = []
    for n_cls, overlap in ((2, 3), (4, 2), (4, 3), (6, 3)):
        records, _, _ = simulate("mixed5", 10_000, overlap, n_cls, [0, n_cls, overlap])
        row = {"items": 10_000, "labels_per_item": overlap, "classes": n_cls}
        for m in OURS:
            times = []
            for _ in range(3):
                start = time.perf_counter()
                aggregate(records, m)
                times.append(time.perf_counter() - start)
            row[m] = min(times)
        model = hierarchical_dawid_skene(records)
        row["em_rounds"] = model.n_iter
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# Output


def _cell(x, nd=3):
    return "n/a" if not x else f"{x['mean']:.{nd}f}"


def print_markdown(res: dict) -> None:
    methods = tuple(res["methods"])
    short = {"majority-ds": "maj-ds", "dawid-skene": "ds", "hierarchical-ds": "**hier-ds**",
             "MajorityVote": "ck MV", "DawidSkene": "ck DS", "OneCoinDawidSkene": "ck 1coin", "GLAD": "ck GLAD",
             "MACE": "ck MACE", "Wawa": "ck Wawa", "ZeroBasedSkill": "ck ZBS", "MMSR": "ck MMSR", "KOS": "ck KOS"}
    head = " | ".join(short.get(m, m) for m in methods)
    print(f"crowd-kit {res['crowd_kit'] or 'not installed'}; {res['draws']} draws, seed {res['seed']}\n")
    print("### Against expert gold (accuracy, mean over draws; ± sd; worst draw in brackets for hier-ds)\n")
    print(f"| set | labels/item | {head} | hier-ds estimated |")
    print("|---|---:|" + "---:|" * len(methods) + "---:|")
    for r in res["gold"]:
        best = max(r[m]["mean"] for m in methods if r.get(m))
        cells = []
        for m in methods:
            if not r.get(m):
                cells.append("n/a")
                continue
            c = f"{r[m]['mean']:.3f} ± {r[m]['sd']:.3f}"
            if m == "hierarchical-ds":
                c += f" [{r[m]['min']:.3f}]"
            cells.append(f"**{c}**" if r[m]["mean"] >= best - 1e-9 else c)
        print(f"| {r['dataset']} | {r['k']} | " + " | ".join(cells) + f" | {r['estimated']:.3f} |")
    for title, rows, summary in (("Simulated pools", res["sims"], res["sims_summary"]),
                                 ("A newcomer with 10 labels (200 items)", res["newcomer"], res["newcomer_summary"])):
        print(f"\n### {title} (accuracy against the truth, mean over seeds; best in bold)\n")
        print(f"| pool | classes | overlap | items | runs | {head} |")
        print("|---|---:|---:|---:|---:|" + "---:|" * len(methods))
        for r in rows:
            best = max(r[m]["mean"] for m in methods if r.get(m))
            cells = [("**" + _cell(r.get(m)) + "**") if r.get(m) and r[m]["mean"] >= best - 1e-9 else _cell(r.get(m))
                     for m in methods]
            pool = r["pool"] + (f" + new {r['newcomer']}" if r.get("newcomer") else "")
            print(f"| {pool} | {r['classes']} | {r['overlap']} | {r['items']} | {r['runs']} | "
                  + " | ".join(cells) + " |")
        print("\n| method | mean accuracy | mean loss to the best | worst loss | settings >= majority |")
        print("|---|---:|---:|---:|---:|")
        for m, s in summary.items():
            print(f"| {m} | {s['mean_accuracy']:.4f} | {s['mean_loss']:.4f} | {s['worst_loss']:.3f} | "
                  f"{s['at_least_majority']} of {s['settings']} |")
    if res.get("sensitivity"):
        sens = res["sensitivity"]
        variants = [k for k in sens["gold"][0] if k not in ("dataset", "k")] if sens["gold"] else list(sens["pools"])
        print("\n### hierarchical-ds settings (accuracy; gold: mean over draws, worst draw in brackets)\n")
        print("| | " + " | ".join(variants) + " |")
        print("|---|" + "---:|" * len(variants))
        for r in sens["gold"]:
            print(f"| {r['dataset']} k={r['k']} | " + " | ".join(f"{r[v]['mean']:.3f} [{r[v]['min']:.3f}]"
                                                               for v in variants) + " |")
        print(f"| pools (mean of {sens['pool_runs']} runs) | " + " | ".join(f"{sens['pools'][v]:.4f}"
                                                                            for v in variants) + " |")
    if res.get("reliability"):
        rel = res["reliability"]
        print("\n### Annotator reliability on the pools (200 and 2000 items)\n")
        print("| annotator | classes | overlap | annotators | evidence labels (mean) | flagged near-chance "
              "| flagged biased | interval holds the real accuracy | estimate - real (mean) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rel["kinds"]:
            print(f"| {r['kind']} | {r['classes']} | {r['overlap']} | {r['annotators']} | {r['labels']:.0f} | "
                  f"{r['near_chance']:.0%} | {r['biased']:.0%} | "
                  f"{'n/a' if r['covered'] is None else format(r['covered'], '.0%')} | "
                  f"{'n/a' if r['mean_error'] is None else format(r['mean_error'], '+.3f')} |")
        la = rel["label_accuracy"]
        print(f"\nTraining labels' estimated accuracy (mean posterior) over {la['runs']} runs: estimated "
              f"{la['mean_estimated']:.3f}, real {la['mean_real']:.3f}, mean |error| {la['mean_abs_error']:.3f}, "
              f"worst {la['worst_error']:+.3f}.")
    if res.get("speed"):
        print("\n### Speed (`aggregate`, seconds, best of 3)\n")
        print("| items | labels/item | classes | " + " | ".join(OURS) + " | EM rounds |")
        print("|---:|---:|---:|" + "---:|" * len(OURS) + "---:|")
        for r in res["speed"]:
            print(f"| {r['items']} | {r['labels_per_item']} | {r['classes']} | "
                  + " | ".join(f"{r[m]:.2f}" for m in OURS) + f" | {r['em_rounds']} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ks", default="2,3,5,10", help="labels per item drawn from the gold sets")
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sizes", default="30,200,2000", help="items per simulated project")
    ap.add_argument("--seeds", default="5,5,2", help="seeds per size, in --sizes order")
    ap.add_argument("--no-crowd-kit", action="store_true")
    ap.add_argument("--skip", default="", help="parts to skip: gold,sims,newcomer,sensitivity,reliability,speed")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    version = None if args.no_crowd_kit else crowd_kit_version()
    methods = OURS + (CROWD_KIT if version else ())
    res: dict = {"crowd_kit": version, "methods": list(methods), "draws": args.draws, "seed": args.seed}
    start = time.perf_counter()
    tasks_gold = [] if "gold" in skip else [
        (name, int(k), d, args.seed, methods) for name in GOLD_SETS if (DATA / name).is_dir()
        for k in args.ks.split(",") for d in range(args.draws)]
    sizes = [int(x) for x in args.sizes.split(",")]
    seeds = dict(zip(sizes, [int(x) for x in args.seeds.split(",")]))
    tasks_sim = [] if "sims" in skip else [
        (pool, n_cls, ov, n, s, None, methods) for n in sizes for pool in POOLS for n_cls in (2, 4)
        for ov in (2, 3) for s in range(seeds[n])]
    tasks_new = [] if "newcomer" in skip else [
        (pool, n_cls, ov, 200, s, kind, methods) for pool in ("good+noisy", "mixed5") for kind in ("g90", "spam")
        for n_cls in (2, 4) for ov in (2, 3) for s in range(5)]
    with Pool(args.jobs) as workers:
        gold = workers.map(_gold_task, tasks_gold, chunksize=1)
        sims = workers.map(_sim_task, tasks_sim, chunksize=1)
        new = workers.map(_sim_task, tasks_new, chunksize=1)
    res["gold"] = _summarise(gold, ("dataset", "k"), methods) if gold else []
    res["sims"] = _summarise(sims, ("pool", "classes", "overlap", "items"), methods) if sims else []
    res["sims_summary"] = regret_summary(res["sims"], methods)
    res["newcomer"] = _summarise(new, ("pool", "newcomer", "classes", "overlap", "items"), methods) if new else []
    res["newcomer_summary"] = regret_summary(res["newcomer"], methods)
    if "sensitivity" not in skip:
        res["sensitivity"] = sensitivity(args.seed, args.draws, 5)
    if "reliability" not in skip:
        res["reliability"] = reliability(3)
    if "speed" not in skip:
        res["speed"] = speed()
    res["seconds"] = time.perf_counter() - start
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        print_markdown(res)
        print(f"\nTotal {res['seconds']:.0f} s")


if __name__ == "__main__":
    main()
