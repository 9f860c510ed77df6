"""`loop audit start` and `loop audit report`: a blind second look at a random sample of final labels.

`start` draws the sample (`labels.audit.draw_sample`, seeded and recorded) from the items whose
label is final under the training policy, leaving out the auditor's own items, items waiting for an
adjudicator and items out for another label (or from a release's items, with the labels it
published); freezes each sampled item's label as it is; and puts
the items, text only, in an audit queue of the auditor's own: a Label Studio project
"<project> · audit N · NAME" with a tab "Audit · NAME" (no other label, no prediction on it).
`report` reads the auditor's answers (`labels.attribution.audit_answers`; they never count as
training labels), measures the sample (`labels.audit.audit_report`), records the report on the
audit, and sends every disagreement to the adjudication queue: the auditor's label never replaces
the final one by itself, an adjudicator decides (`loop adjudicate`).

Crash safety: the audit and its sample are recorded in one transaction before anything is put in
Label Studio; publishing the queue is idempotent (the project is found by title, tasks already
imported are found by item id), and `start` for an auditor whose last audit was never fully
published finishes that one instead of drawing a new sample.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from typing import Any

from loop.errors import ConfigError
from loop.labels.attribution import audit_answers
from loop.labels.audit import STRATIFY, audit_report, draw_sample
from loop.services.context import Context
from loop.services.sync import sync_annotations
from loop.workflows import training
from loop.workflows.queues import import_missing, queue_project


def audit_tab(auditor: str) -> str:
    return f"Audit · {auditor}"


def final_labels_to_audit(store, p: int, auditor: str, *, round_id: int | None = None,
                          release: str | None = None) -> dict[str, dict]:
    """item -> its decision ({"label", "decided_by", "confidence", "n_labels"}) for the items an
    audit may sample: labelled, decided (not waiting for an adjudicator, not out for another label),
    of round `round_id` when given, and never labelled by the auditor. With `release`, the items of
    that release with the label it published (what a team that cites the release relies on)."""
    annotations = store.annotations(p)
    theirs = {a["item_id"] for a in annotations.values() if a.get("annotator") == auditor}
    if release is not None:
        if round_id is not None:
            raise ConfigError("audit one round (--round) or one release (--release), not both")
        from loop.workflows.release import read_manifest

        manifest = read_manifest(store, p, release)
        return {e["id"]: {"label": e["label"], "decided_by": e["decided_by"], "confidence": None,
                          "n_labels": e["n_labels"], "guideline_version": e.get("guideline_version")}
                for e in manifest["items"] if e["id"] not in theirs}
    counted, _ = training.labels_that_count(store, p, annotations)
    counted = training.without_gold(store, p, counted)  # gold labels are trusted, not audited
    adjudication = store.adjudication(p)
    decisions = training.policy(store, p).decisions(counted, adjudication)
    waiting = {i for i, rec in adjudication.items() if rec.get("adjudicator")
               and decisions.get(i, {}).get("decided_by") != "adjudicated"}
    scope = None
    if round_id is not None:
        if store.round(p, round_id) is None:
            known = ", ".join(map(str, store.round_numbers(p))) or "none yet"
            raise ConfigError(f"round {round_id} does not exist (rounds: {known}); `loop status` lists them")
        scope = set(store.round_assignments(p, round_id))
    out_for_relabel = set(store.relabelling(p))
    return {i: d for i, d in decisions.items()
            if i not in waiting and i not in theirs and i not in out_for_relabel and (scope is None or i in scope)}


def _frozen(item: str, decision: dict, counted: list[dict], round_of: dict) -> dict[str, Any]:
    """What the item's label was when sampled: the decision, who gave which label, the guideline."""
    mine = [a for a in counted if a["item_id"] == item and a.get("label") is not None]
    versions = Counter(a.get("guideline_version") for a in mine if a["label"] == decision["label"])
    version = max(versions, key=lambda v: (versions[v], str(v))) if versions else None
    return {"label": decision["label"], "decided_by": decision["decided_by"],
            "confidence": decision.get("confidence"), "annotators": {a["annotator"]: a["label"] for a in mine},
            "guideline_version": decision.get("guideline_version", version), "round": round_of.get(item)}


def start(ctx: Context, p: int, auditor: str, *, sample: int = 50, round_id: int | None = None,
          release: str | None = None, stratify: str | None = None, seed: int | None = None) -> dict[str, Any]:
    store = ctx.store
    if auditor not in store.annotators():
        raise ConfigError(f"unknown auditor {auditor!r}; add them with `loop annotators add {auditor}`")
    if sample < 1:
        raise ConfigError(f"--sample is {sample}; an audit needs at least 1 item")
    if stratify not in (None, *STRATIFY):
        raise ConfigError(f"--stratify is {stratify!r}; the sample can be stratified by: {', '.join(STRATIFY)}")
    unfinished = next((a for a in reversed(store.audits(p)) if a["auditor"] == auditor and a["status"] == "open"
                       and not a.get("published")), None)
    if unfinished is not None:  # a run that died while publishing: finish it
        return {**_publish(ctx, p, unfinished["id"]), "resumed": True}
    sync_annotations(store, ctx.ls, p)
    population = final_labels_to_audit(store, p, auditor, round_id=round_id, release=release)
    if not population:
        where = (f" in round {round_id}" if round_id is not None else f" in release {release}" if release else "")
        raise ConfigError(f"no final labels to audit{where} that {auditor} did not make themselves; "
                          "label some items first (`loop next-round`)")
    seed = secrets.randbelow(2**31) if seed is None else int(seed)
    chosen = draw_sample({i: d["label"] for i, d in population.items()}, sample, seed, stratify=stratify)
    counted, _ = training.labels_that_count(store, p)
    round_of = store.assigned(p)
    frozen = {i: _frozen(i, population[i], counted, round_of) for i in chosen}
    record = {"auditor": auditor, "created_at": time.time(), "seed": seed, "sample_size": sample,
              "scope": {"round": round_id, "release": release}, "stratify": stratify, "population": len(population),
              "sample": chosen, "status": "open", "published": False, "ls_project": None, "report": None,
              "training_policy": training.policy(store, p).as_dict()}
    n = store.plan_audit(p, record, frozen)
    return {**_publish(ctx, p, n), "resumed": False}


def _publish(ctx: Context, p: int, n: int) -> dict[str, Any]:
    """Put audit n's sample in the auditor's audit queue (idempotent)."""
    store = ctx.store
    audit = store.audit(p, n)
    q = audit.get("ls_project") or queue_project(ctx, p, f"audit {n} · {audit['auditor']}", audit_tab(audit["auditor"]))
    store.update_audit(p, n, ls_project=q)
    items = store.audit_items(p, n)
    todo = [i for i in audit["sample"] if not items[i].get("task_id")]
    import_missing(ctx, p, q, todo, lambda tasks: store.add_audit_tasks(p, n, tasks), "sampled items")
    store.update_audit(p, n, published=True)
    audit = store.audit(p, n)
    return {"audit": n, "auditor": audit["auditor"], "population": audit["population"],
            "sample": audit["sample"], "seed": audit["seed"], "stratify": audit["stratify"],
            "scope": audit["scope"], "ls_project": q, "url": f"{ctx.settings.ls_url}/projects/{q}/data",
            "tab": audit_tab(audit["auditor"])}


def report(ctx: Context, p: int, audit_id: int | None = None) -> dict[str, Any]:
    """Measure audit `audit_id` (default: the latest) on the auditor's answers so far, record the
    report on the audit, and return it. Disagreements wait for an adjudicator (`labels.audit.disputes`)."""
    store = ctx.store
    numbers = store.audit_numbers(p)
    if not numbers:
        raise ConfigError("no audit yet; start one with `loop audit start --auditor NAME`")
    n = numbers[-1] if audit_id is None else audit_id
    audit = store.audit(p, n)
    if audit is None:
        raise ConfigError(f"audit {n} does not exist (audits: {', '.join(map(str, numbers))})")
    sync_annotations(store, ctx.ls, p)
    answers = audit_answers(store.annotations(p).values(), n, audit["auditor"])
    result = audit_report(store.audit_items(p, n), answers, population=audit["population"])
    result["reported_at"] = time.time()
    done = result["n_answered"] == result["n_sampled"]
    store.update_audit(p, n, report=result, status="reported" if done else "open")
    return {"audit": n, "auditor": audit["auditor"], "scope": audit["scope"], "seed": audit["seed"],
            "stratify": audit["stratify"], "complete": done, **result}
