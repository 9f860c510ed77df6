"""The labelling interface: a config lists our labels; a result yields the chosen one; a prediction row."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from loop.labels.interface import CONTROL, OBJECT, choice_result, config_labels, label_config, result_label

LABEL_SETS = [
    ["billing", "delivery"],
    ["out_of_scope", "account", "technical", "billing"],  # order is kept, not sorted
    ["Needs review", "it's fine", "naïve café", "日本語"],
    [f"class{i}" for i in range(30)],
]


@pytest.mark.parametrize("labels", LABEL_SETS)
def test_label_config_round_trips(labels):
    assert config_labels(label_config(labels)) == labels


@pytest.mark.parametrize("labels", LABEL_SETS + [["a&b", "x<y>z", 'say "hi"', "it's"]])
def test_label_config_is_valid_xml_with_our_names(labels):
    root = ET.fromstring(label_config(labels))
    assert root.tag == "View"
    text = root.find("Text")
    assert text.get("name") == OBJECT and text.get("value") == f"${OBJECT}"
    choices = root.find("Choices")
    assert choices.get("name") == CONTROL and choices.get("toName") == OBJECT
    assert choices.get("choice") == "single-radio"
    # An XML parser sees exactly the labels, whatever characters they hold.
    assert [c.get("value") for c in choices.findall("Choice")] == labels


def test_config_labels_reads_a_config_written_by_hand():
    config = """<View>
      <Header value="Pick one"/>
      <Text name="text" value="$text"/>
      <Choices name="other" toName="text"><Choice value="not-ours"/></Choices>
      <Choices toName="text" name="label" showInline="true">
        <Choice value="pos" hotkey="1"/>
        <Choice alias="n" value="neg"/>
      </Choices>
    </View>"""
    assert config_labels(config) == ["pos", "neg"]


def test_config_labels_without_our_control():
    assert config_labels('<View><Text name="text" value="$text"/></View>') == []
    assert config_labels("") == []


def test_choice_result_shape():
    assert choice_result("billing") == [
        {"from_name": CONTROL, "to_name": OBJECT, "type": "choices", "value": {"choices": ["billing"]}}]


@pytest.mark.parametrize("label", ["billing", "a&b", "日本語"])
def test_result_label_reads_choice_result(label):
    assert result_label(choice_result(label)) == label


def test_result_label_skips_foreign_regions():
    result = [
        {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["positive"]}},
        {"from_name": CONTROL, "to_name": "text", "type": "labels", "value": {"labels": ["billing"]}},
        {"from_name": CONTROL, "to_name": "text", "type": "choices", "value": {"choices": ["delivery", "x"]}},
    ]
    assert result_label(result) == "delivery"


@pytest.mark.parametrize("result", [
    None,
    [],
    [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["positive"]}}],
    [{"from_name": CONTROL, "to_name": "text", "type": "textarea", "value": {"text": ["billing"]}}],
    [{"from_name": CONTROL, "to_name": "text", "type": "choices", "value": {"choices": []}}],
    [{"from_name": CONTROL, "to_name": "text", "type": "choices", "value": {}}],
])
def test_result_label_none_for_foreign_or_empty(result):
    assert result_label(result) is None


def test_result_label_stringifies():
    assert result_label([{"from_name": CONTROL, "type": "choices", "value": {"choices": [3]}}]) == "3"


def test_config_labels_round_trips_xml_special_characters():
    from loop.labels.interface import config_labels, label_config

    labels = ["a&b", 'say "hi"', "it's", "<tag>", "plain"]
    assert config_labels(label_config(labels)) == labels


def test_prediction_row_is_what_label_studio_imports():
    from loop.labels.interface import prediction_row

    row = prediction_row("billing", np.float64(0.8125), "v3")
    assert row == {"result": choice_result("billing"), "score": 0.8125, "model_version": "v3"}
    assert type(row["score"]) is float and result_label(row["result"]) == "billing"
    assert prediction_row("billing", 0.5, "v3", task=np.int64(12))["task"] == 12
