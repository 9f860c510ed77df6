from loop.labels.adjudication import adjudicated_labels, contested


def ann(item, who, label, t="2026-01-01T00:00:00"):
    return {"item_id": item, "annotator": who, "label": label, "created_at": t}


def test_contested_queue_is_worst_first_and_ignores_agreement():
    anns = [
        ann("agree", "a", "x"), ann("agree", "b", "x"),
        ann("two-one", "a", "x"), ann("two-one", "b", "x"), ann("two-one", "c", "y"),
        ann("three-way", "a", "x"), ann("three-way", "b", "y"), ann("three-way", "c", "z"),
        ann("even", "a", "x"), ann("even", "b", "y"),
        ann("skipped", "a", None), ann("skipped", "b", "x"),
    ]
    queue = contested(anns)
    assert [q["item_id"] for q in queue] == ["three-way", "even", "two-one"]  # shares 1/3, 1/2, 2/3
    assert queue[0]["labels"] == {"x": 1, "y": 1, "z": 1} and queue[2]["top_share"] == round(2 / 3, 3)


def test_the_adjudicators_latest_label_is_final_and_leaves_the_queue():
    anns = [ann("i", "a", "x"), ann("i", "b", "y"), ann("i", "judge", "y", "2026-01-02"),
            ann("i", "judge", "z", "2026-01-03"), ann("j", "a", "x"), ann("j", "b", "y")]
    adjudication = {"i": {"adjudicator": "judge"}, "j": {"adjudicator": "judge"}}
    assert adjudicated_labels(anns, adjudication) == {"i": "z"}
    queue = contested(anns, adjudication)
    assert [q["item_id"] for q in queue] == ["j"] and queue[0]["adjudicator"] == "judge"


def test_a_label_by_someone_who_is_not_the_adjudicator_decides_nothing():
    anns = [ann("i", "a", "x"), ann("i", "b", "y"), ann("i", "c", "y")]
    assert adjudicated_labels(anns, {"i": {"adjudicator": "judge"}}) == {}
