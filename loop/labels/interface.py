"""The labelling interface as data: Label Studio's label config, the annotation result that carries
a label, and the prediction row that carries the model's guess. Pure: `services.labelstudio` sends
these over HTTP, the sync reads them back, the ML backend and the rounds build predictions here.
"""

from __future__ import annotations

from typing import Any, Sequence
from xml.etree import ElementTree
from xml.sax.saxutils import quoteattr

CONTROL = "label"   # the <Choices> name in the label config
OBJECT = "text"     # the <Text> name; tasks carry their text under data.text
# Label Studio's webhook actions that change a label: `loop init` subscribes to these, the ML
# backend turns them into trainer events.
LABEL_CHANGES = ("ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED")


# Data Manager tabs. Label Studio computes a tab's Completed, Annotated by and score columns only
# when the tab lists the columns it hides ({"explore": [...], "labeling": [...]}); a column is hidden
# when it is in both lists (data_manager/managers.py, get_fields_for_evaluation).
_NOISE = ["tasks:inner_id", "tasks:annotations_ids", "tasks:predictions_model_versions", "tasks:predictions_results",
          "tasks:file_upload", "tasks:storage_filename", "tasks:updated_by", "tasks:avg_lead_time",
          "tasks:draft_exists", "tasks:data.item_id"]
# An annotator's queue: the text, when they finished it and by whom; no model columns (a queue has no predictions).
QUEUE_TAB = "My items"
QUEUE_TAB_HIDDEN = {k: _NOISE + ["tasks:annotations_results", "tasks:predictions_score", "tasks:total_predictions",
                                 "tasks:cancelled_annotations", "tasks:created_at", "tasks:updated_at"]
                    for k in ("explore", "labeling")}
# The main project, for operators: also the labels given and the model's score.
MAIN_TAB = "All items"
MAIN_TAB_HIDDEN = {k: list(_NOISE) for k in ("explore", "labeling")}


def label_config(labels: Sequence[str]) -> str:
    choices = "\n    ".join(f"<Choice value={quoteattr(lab)}/>" for lab in labels)
    return (f'<View>\n  <Text name="{OBJECT}" value="${OBJECT}"/>\n'
            f'  <Choices name="{CONTROL}" toName="{OBJECT}" choice="single-radio" showInline="true">\n'
            f"    {choices}\n  </Choices>\n</View>")


def config_labels(config: str) -> list[str]:
    """The choice values of our <Choices> control in a label config ([] if it has none)."""
    try:
        root = ElementTree.fromstring(config)
    except ElementTree.ParseError:
        return []
    for control in root.iter("Choices"):
        if control.get("name") == CONTROL:
            return [c.get("value", "") for c in control.iter("Choice")]
    return []


def choice_result(label: str) -> list[dict[str, Any]]:
    return [{"from_name": CONTROL, "to_name": OBJECT, "type": "choices", "value": {"choices": [label]}}]


def result_label(result: list[dict[str, Any]]) -> str | None:
    """The chosen label in an annotation result, or None when it has none of ours."""
    for region in result or []:
        if region.get("from_name") == CONTROL and region.get("type") == "choices":
            choices = region.get("value", {}).get("choices") or []
            if choices:
                return str(choices[0])
    return None


def prediction_row(label: str, score: float, model_version: str, task: int | None = None) -> dict[str, Any]:
    """One prediction as Label Studio takes it: the model's label as a choice result, `score` its
    confidence (`core.model.predict`; low = uncertain), and the model version that made it.

    The one place a prediction is shaped: next-round's predictions on a round's tasks, `loop
    predictions push` and the ML backend's /predict all build theirs here. `task` is set when the
    row is imported through the API (the backend's answer is matched to tasks by position).
    """
    row: dict[str, Any] = {"result": choice_result(label), "score": float(score), "model_version": model_version}
    if task is not None:
        row = {"task": int(task), **row}
    return row
