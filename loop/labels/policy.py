"""The training policy: which labels a model of a project learns from, and how several become one.

Recorded on the project (`training_policy` in its record) and applied by every path that trains or
reports the training labels: `loop next-round`, the trainer's retrain after each annotation burst,
`loop status`, `loop validate` and `loop export`. Before it was recorded, the trainer forgot
`next-round --guideline-version` and replaced that model with one trained on every label.

- aggregation: the method that turns an item's labels into one (`labels.aggregation.METHODS`).
- guideline_version: only labels made under this guideline version count; None: every version.
- adjudications: an adjudicator's label is final for the item (their latest answer wins).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from loop.errors import ConfigError
from loop.labels.adjudication import adjudicated_labels
from loop.labels.aggregation import (
    DEFAULT_METHOD,
    METHODS,
    aggregate,
    annotator_reliability,
    label_accuracy_estimate,
)


@dataclass(frozen=True)
class TrainingPolicy:
    aggregation: str = DEFAULT_METHOD
    guideline_version: int | None = None
    adjudications: bool = True

    def __post_init__(self):
        if self.aggregation not in METHODS:
            raise ConfigError(f"unknown aggregation method {self.aggregation!r}; use one of: {', '.join(METHODS)}")
        if self.guideline_version is not None and (isinstance(self.guideline_version, bool)
                                                   or not isinstance(self.guideline_version, int)
                                                   or self.guideline_version < 1):
            raise ConfigError(f"guideline version {self.guideline_version!r} is not a version number (1, 2, ...)")

    @classmethod
    def of(cls, project: Mapping[str, Any] | None) -> "TrainingPolicy":
        """The policy recorded on a project record; the defaults when none is."""
        return cls(**((project or {}).get("training_policy") or {}))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        versions = (f"labels made under guideline v{self.guideline_version}" if self.guideline_version is not None
                    else "labels of every guideline version")
        judge = ", an adjudicator's label final" if self.adjudications else ""
        return f"{versions}, aggregated by {self.aggregation}{judge}"

    def counted(self, annotations: Iterable[Mapping]) -> list[Mapping]:
        """The label records this policy counts: labelled (not skipped), of the chosen guideline version."""
        return [a for a in annotations if a.get("label") is not None
                and (self.guideline_version is None or a.get("guideline_version") == self.guideline_version)]

    def decisions(self, annotations: Iterable[Mapping], adjudication: Mapping[str, Mapping]) -> dict[Any, dict]:
        """item -> {"label", "confidence", "decided_by", "n_labels"} (`labels.aggregation.aggregate`)."""
        usable = self.counted(annotations)
        decided = adjudicated_labels(usable, adjudication) if self.adjudications else {}
        return aggregate(usable, self.aggregation, adjudicated=decided)

    def label_quality(self, annotations: Iterable[Mapping], adjudication: Mapping[str, Mapping],
                      decisions: Mapping[Any, Mapping] | None = None) -> dict[str, Any]:
        """What the labels this policy counts are worth: "annotators" (annotator -> estimated accuracy,
        its 95% interval, the labels it rests on, flags and warnings: `aggregation.annotator_reliability`,
        adjudicators' rulings left out as in agreement) and "training_labels" (the expected share of
        the training labels that are right: `aggregation.label_accuracy_estimate`). `decisions`: this
        policy's `decisions` of the same labels, when the caller has them already."""
        usable = self.counted(annotations)
        decisions = self.decisions(usable, adjudication) if decisions is None else decisions
        ruled = {item: d["label"] for item, d in decisions.items() if d["decided_by"] == "adjudicated"}
        records = [a for a in usable if (adjudication.get(a["item_id"]) or {}).get("adjudicator") != a["annotator"]]
        return {"annotators": annotator_reliability(records, decisions, adjudicated=ruled) if records else {},
                "training_labels": label_accuracy_estimate(decisions, self.aggregation)}

    def final_labels(self, annotations: Iterable[Mapping], adjudication: Mapping[str, Mapping]) -> dict[Any, str]:
        """One training label per item: never two contradictory rows for one item."""
        return {item: d["label"] for item, d in self.decisions(annotations, adjudication).items()}
