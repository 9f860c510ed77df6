"""`loop coverage` on files through the CLI (real embeddings, a fresh workspace cache): JSON with the
planted gap first, the map, the model's errors when production carries labels, the table, one-line
errors for bad input; and `loop validate --reference` with a file of texts."""

from __future__ import annotations

import json

from tests.cli.conftest import one_error_line, run, write

TICKETS = {
    "billing": ["I was charged twice for my order.", "Why is there an admin fee on my invoice?",
                "Please refund the late fee, I paid on time.", "My invoice shows the wrong amount."],
    "delivery": ["Where is my parcel? Tracking has not moved.", "The courier left my box in the rain.",
                 "My order arrived with the wrong item inside.", "How long does delivery to Ireland take?"],
    "account": ["My account is locked after too many logins.", "How do I change the email on my profile?",
                "I forgot my password and the reset link expired.", "Please delete my account and my data."],
    "out_of_scope": ["Tell me a joke about cats.", "Who won the football match last night?",
                     "Can you recommend a good book?", "What is the weather in Paris today?"],
}
CRYPTO = ["How do I move my bitcoin to a hardware wallet?", "Can I buy ethereum with my balance?",
          "Why is my crypto withdrawal still pending?", "What fee do you charge to sell bitcoin?",
          "My crypto wallet address was rejected.", "How long does a bitcoin transfer take to confirm?"]


def files(tmp_path):
    data = write(tmp_path / "data.jsonl", [{"text": t, "label": lab} for lab, ts in TICKETS.items() for t in ts]
                 + [{"text": "Do you sell gift cards?"}])  # an unlabelled row: part of the pool, not of the labels
    # Production: what the tickets look like, plus crypto sent four times over. Three rows carry labels; two
    # of them contradict the training file on purpose, so the model (trained on data.jsonl) gets them wrong.
    prod = [{"text": t} for ts in TICKETS.values() for t in ts[:2]] + [{"text": t} for t in CRYPTO * 4]
    prod += [{"text": "Tell me a joke about cats.", "label": "billing"},
             {"text": "I was charged twice for my order.", "label": "billing"},
             {"text": "Where is my parcel? Tracking has not moved.", "label": "account"}]
    return data, write(tmp_path / "production.jsonl", prod)


def test_json_puts_the_planted_gap_first_and_draws_the_map(workspace):
    data, prod = files(workspace)
    png = workspace / "map.png"
    result = run("coverage", str(data), "--production", str(prod), "--k", "5", "--plot", str(png), "--json")
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)
    assert r["pool"] == 17 and r["production"] == 35 and r["labelled"] == 16 and r["k"] == 5
    first = r["flags"]["under_covered"][0]
    assert isinstance(first["cluster"], int)
    gap = r["clusters"][first["cluster"]]
    # Crypto first. Tiny differences in the vectors (torch's threads) can let one ticket join its cluster.
    assert gap["cluster"] == first["cluster"] and gap["labelled"] <= 1 and gap["production"] >= 8
    assert sum(text in CRYPTO for text in gap["examples"]) >= len(gap["examples"]) - 1 >= 2
    under = {f["cluster"] for f in r["flags"]["under_covered"]}
    assert sum(c["production"] for c in r["clusters"] if c["cluster"] in under) >= 20  # crypto may split
    assert r["negatives"] == ["out_of_scope"] and r["flags"]["no_negative"]["status"] == "done"
    assert r["shift"]["b"] == "production" and r["shift"]["test"]["status"] == "done"
    # Production's labelled rows score a model trained on the file's labels; the crypto fee is a miss.
    errors = r["errors"]
    assert errors["n_items"] == 3 and errors["sources"] == {"production": 3} and errors["errors"] == 2
    assert {(e["label"], e["predicted"]) for e in errors["by_pair"]} == {("billing", "out_of_scope"),
                                                                          ("account", "delivery")}
    assert errors["by_pair"][0]["examples"][0]["text"] in ("Tell me a joke about cats.",
                                                           "Where is my parcel? Tracking has not moved.")
    assert r["plot"] == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(r["timings"]) == {"clustering_s", "report_s", "map_s"}


def test_the_table_names_flags_shift_and_errors(workspace):
    data, prod = files(workspace)
    result = run("coverage", str(data), "--production", str(prod), "--k", "5", "--show", "3")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for part in ("Coverage of", "busiest clusters", "Under-labelled", "No negative example", "Annotators disagree",
                 "Shift", "Model errors", "by confused pair"):
        assert part in out, part
    assert "bitcoin" in out and "account -> delivery" in out


def test_without_production_the_pool_stands_for_traffic(workspace):
    data, _ = files(workspace)
    result = run("coverage", str(data), "--k", "3", "--json")
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)
    assert r["production"] is None and r["shift"]["b"] == "pool" and r["errors"] is None
    assert "no production sample" in r["errors_reason"]


def test_bad_input_is_one_error_line(workspace):
    data, prod = files(workspace)
    one_error_line(run("coverage", str(data), "--production", str(workspace / "nope.jsonl")), "nope.jsonl",
                   "no such file")
    one_error_line(run("coverage", str(data), "--plot", str(workspace / "map.jpg")), "map.jpg", ".png")
    empty = write(workspace / "empty.jsonl", [{"text": " "}, {"text": ""}])
    one_error_line(run("coverage", str(data), "--production", str(empty)), "empty.jsonl", "no non-empty")
    other = write(workspace / "other.jsonl", [{"body": "hello"}])
    one_error_line(run("coverage", str(other)), "other.jsonl", "text")


def test_help_teaches_the_flags_and_the_test():
    result = run("coverage", "--help")
    assert result.exit_code == 0
    for word in ("--production", "--plot", "MMD", "under", "negative", "confused label pair"):
        assert word in result.stdout, word


def test_validate_reference_with_texts_prints_the_shift(workspace):
    data, _ = files(workspace)
    reference = write(workspace / "reference.jsonl", [{"text": t} for t in CRYPTO * 4])
    result = run("validate", str(data), "--reference", str(reference), "--no-label-errors", "--json")
    assert result.exit_code == 0, result.output
    shift = json.loads(result.stdout)["shift"]
    assert shift["test"]["shift"] is True and shift["test"]["p_value"] < 0.01
    table = run("validate", str(data), "--reference", str(reference), "--no-label-errors")
    assert "shift against" in table.stdout and "SHIFT" in table.stdout
