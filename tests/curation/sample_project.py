"""A small labelled project for the curation tests (export, data card): 28 items over two rounds,
four annotators, two guideline versions, planted duplicates, a tie, an adjudicated item, labels
made outside the rounds, and optionally a contradiction. Built in the real test Redis."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

from loop.core.dataset import text_key
from loop.labels.guidelines import get
from loop.services.vectors import EmbeddingCache, ItemVectors
from tests.helpers import write_guideline

P = 7
LABELS = ["billing", "delivery", "account", "technical", "out_of_scope"]

# id -> (text, round or None). Planted: it06/it07 are the same input after normalisation (an exact
# duplicate, same label); it08 is a near-duplicate of it02 (one contraction apart).
ITEMS = {
    "it01": ("I was charged twice for my order, please refund one of the payments.", 1),
    "it02": ("Where is my parcel? The tracking has not moved for a week.", 1),
    "it03": ("My account is locked after too many login attempts.", 1),
    "it04": ("The app crashes every time I open the orders page.", 1),
    "it05": ("What's the weather like in Paris today?", 1),
    "it06": ("Can I get a refund for the damaged kettle?", 1),
    "it07": ("can I get a refund for the   DAMAGED kettle?", 1),
    "it08": ("Where is my parcel? The tracking hasn't moved for a week.", 1),
    "it09": ("How do I change the email address on my profile?", 1),
    "it10": ("The checkout button does nothing when I click it.", 1),
    "it11": ("Tell me a joke about cats.", 1),
    "it12": ("Why was I charged an admin fee on my statement?", 1),
    "it13": ("My invoice shows the wrong amount for last month.", 2),
    "it14": ("The courier left my box in the rain and it is soaked.", 2),
    "it15": ("I never received the two-factor code by SMS.", 2),
    "it16": ("The website shows a blank page after I log in.", 2),
    "it17": ("Who won the football match last night?", 2),
    "it18": ("Please cancel the late fee, I paid on time.", 2),
    "it19": ("My order arrived with the wrong item inside.", 2),
    "it20": ("I want to close my account and delete my data.", 2),
    "it21": ("Error 503 when I try to pay with my card in the app.", 2),
    "it22": ("Can you recommend a good book to read?", 2),
    "it23": ("How long does delivery to Ireland take?", 2),
    "it24": ("I forgot my password and the reset link expired.", 2),
    "it25": ("Do you sell gift cards for birthdays?", None),
    "it26": ("The discount code SPRING10 did not apply at checkout.", None),
    "it27": ("Is the shop open on bank holidays?", None),
    "it28": ("My parcel was delivered to the neighbour by mistake.", None),
}
# Contradiction (added by the `contradiction` option): same input after normalisation, two labels.
CONTRA = {"it31": "My password reset email never arrives.", "it32": "my password reset email  never arrives."}

# item -> [(annotator, label)] in time order; round 1 labels under v1, round 2 under v2.
LABELS_OF = {
    "it01": [("ann", "billing"), ("bob", "billing")],                        # unanimous
    "it02": [("ann", "delivery"), ("bob", "delivery"), ("cat", "billing")],  # majority
    "it03": [("ann", "account"), ("bob", "technical")],                      # tie
    "it04": [("ann", "technical"), ("bob", "account")],                      # adjudicated by judge
    "it05": [("ann", "out_of_scope"), ("bob", "out_of_scope")],
    "it06": [("ann", "billing"), ("bob", "billing")],
    "it07": [("ann", "billing"), ("bob", "billing")],
    "it08": [("ann", "delivery"), ("bob", "delivery")],
    "it09": [("ann", "account"), ("bob", "account")],
    "it10": [("ann", "technical"), ("bob", "technical")],
    "it11": [("ann", "out_of_scope"), ("bob", "out_of_scope")],
    "it12": [("ann", "billing"), ("bob", "delivery"), ("cat", "billing")],
    "it13": [("ann", "billing"), ("cat", "billing")],
    "it14": [("ann", "delivery"), ("cat", "delivery")],
    "it15": [("ann", "account"), ("cat", "technical"), ("bob", "account")],
    "it16": [("ann", "technical"), ("cat", "technical")],
    "it17": [("ann", "out_of_scope"), ("cat", "out_of_scope")],
    "it18": [("ann", "billing"), ("cat", "billing")],
    "it19": [("ann", "delivery"), ("cat", "delivery")],
    "it20": [("ann", "account"), ("cat", "account")],
    "it21": [("ann", "technical"), ("cat", "billing")],
    "it22": [("ann", "out_of_scope"), ("cat", "out_of_scope")],
    "it23": [("ann", "delivery"), ("cat", "delivery")],
    "it24": [("ann", "account"), ("cat", "account")],
    "it25": [("ann", "billing")],                                            # outside the rounds
    "it26": [("ann", "billing")],
}
JUDGE = ("it04", "technical")
OUTSIDE_ROUNDS = ("it25", "it26")  # labelled though no round sent them: they count once accepted
EXPECTED_DECIDED = {"it01": "unanimous", "it02": "majority", "it03": "tie-break", "it04": "adjudicated",
                    "it12": "majority", "it15": "majority", "it21": "tie-break", "it25": "single"}

GUIDE_V1 = "# Support tickets v1\n\nLabel what the customer needs done.\n"
GUIDE_V2 = ("# Support tickets v2\n\nLabel what the customer needs done.\n\n## Two-factor codes\n\n"
            "A missing two-factor code is **account**, not technical.\n")


def write_guidelines(folder: Path) -> Path:
    labels = {lab: f"definition of {lab}" for lab in LABELS}
    write_guideline(folder, "v1.md", 1, labels, body=GUIDE_V1, negatives=["out_of_scope"])
    write_guideline(folder, "v2.md", 2, labels, body=GUIDE_V2, negatives=["out_of_scope"])
    return folder


def build_project(store, tmp_path: Path, *, contradiction: bool = False) -> dict:
    """A project with two rounds, four annotators, two guideline versions and a source JSONL."""
    texts = {i: t for i, (t, _) in ITEMS.items()}
    labels_of = dict(LABELS_OF)
    if contradiction:
        texts |= CONTRA
        labels_of |= {"it31": [("ann", "account"), ("cat", "account")],
                      "it32": [("ann", "technical"), ("cat", "technical")]}
    source = tmp_path / "tickets.jsonl"
    source.write_text("".join(json.dumps({"ticket": i, "body": t}) + "\n" for i, t in texts.items()), encoding="utf-8")
    guides = write_guidelines(tmp_path / "guidelines")
    v2 = get(guides, 2)
    store.save_project(P, {"id": P, "labels": LABELS, "text_field": "body", "label_field": None, "id_field": "ticket",
                           "source": str(source), "guideline_version": 2, "guideline_hash": v2.content_hash,
                           "guidelines_dir": str(guides), "budget": 200})
    store.add_items(P, {i: {"task_id": 1000 + n, "key": text_key(t)} for n, (i, t) in enumerate(texts.items())})
    for name in ("ann", "bob", "cat", "judge"):
        store.add_annotator({"name": name, "email": f"{name}@loop.local", "ls_user_id": len(name), "created_at": 0})

    rounds = {1: [i for i, (_, r) in ITEMS.items() if r == 1], 2: [i for i, (_, r) in ITEMS.items() if r == 2]}
    if contradiction:
        rounds[2] += list(CONTRA)
    for n, strategy, annotators in ((1, "random", ["ann", "bob", "cat"]), (2, "margin", ["ann", "bob", "cat"])):
        record = {"id": n, "created_at": 1000.0 * n, "strategy": strategy, "requested_strategy": strategy,
                  "size": len(rounds[n]), "overlap": 2, "annotators": annotators, "model_version": f"v{n}",
                  "guideline_version": n, "labels_spent": 0 if n == 1 else 26,
                  "metrics": {"n_labels": 0 if n == 1 else 12, "kappa": None if n == 1 else 0.812,
                              "dev_accuracy": None, "dev_macro_f1": None}}
        store.plan_round(P, record, {i: [a for a, _ in labels_of[i]] for i in rounds[n]})
        store.update_round(P, n, status="open")
    store.close_round(P, 1)
    store.update_round(P, 1, closing={"round": 1, "agreement": {"percent": 0.9, "alpha": 0.777, "mean_kappa": 0.8,
                                                                 "items": 12, "warnings": []}})

    annotations, k = {}, 0
    for item, labs in labels_of.items():
        version = 1 if ITEMS.get(item, ("", 2))[1] == 1 else 2
        for who, lab in labs:
            k += 1
            annotations[f"a{k}"] = {"id": f"a{k}", "item_id": item, "task_id": 0, "annotator": who, "label": lab,
                                    "skipped": False, "created_at": f"2026-01-01T00:{k // 60:02d}:{k % 60:02d}",
                                    "guideline_version": version, "guideline_hash": f"h{version}"}
    # a skip carries no label and makes no row; the adjudicator's ruling comes last
    annotations["skip"] = {"id": "skip", "item_id": "it27", "task_id": 0, "annotator": "bob", "label": None,
                           "skipped": True, "created_at": "2026-01-02T00:00:00", "guideline_version": 2}
    annotations["judge"] = {"id": "judge", "item_id": JUDGE[0], "task_id": 0, "annotator": "judge",
                            "label": JUDGE[1], "skipped": False, "created_at": "2026-01-03T00:00:00",
                            "guideline_version": 2, "guideline_hash": "h2"}
    store.replace_annotations(P, annotations)
    store.add_adjudication(P, {JUDGE[0]: {"adjudicator": "judge", "assigned_at": 0}})
    # it25 and it26 were labelled outside the rounds; an operator accepted those labels (`loop accept`)
    store.accept(P, [aid for aid, a in annotations.items() if a["item_id"] in OUTSIDE_ROUNDS])
    return {"texts": texts, "source": source, "guidelines": guides, "annotations": annotations}


def make_ctx(store, tmp_path: Path, embedder, ls, texts: dict[str, str]):
    """A context for the workflows: the real store and embedder, a cache in tmp_path, and the fake
    Label Studio serving `texts` as its tasks' texts."""
    ls.texts = dict(texts)
    cache = EmbeddingCache(tmp_path / "cache" / "embeddings.sqlite")
    return SimpleNamespace(store=store, cache=cache, embedder=embedder, ls=ls, settings=None,
                           vectors=ItemVectors(store, cache, embedder, ls_texts=lambda p: ls.task_texts(p)))


def read_back(path: Path, fmt: str) -> list[dict]:
    if fmt == "jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    if fmt == "csv":
        with path.open(encoding="utf-8", newline="") as fh:
            return list(csv.DictReader(fh))
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


