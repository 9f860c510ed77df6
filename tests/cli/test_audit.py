"""`loop audit report`'s table: the verdict once, the errors by label, annotator and guideline."""

from __future__ import annotations

from rich.console import Console

from loop.cli import audit as audit_cli
from loop.labels.audit import audit_report


def test_the_report_says_its_verdict_once_and_where_the_errors_are(monkeypatch):
    console = Console(record=True, width=140)
    monkeypatch.setattr(audit_cli, "console", console)
    sample, answers = {}, {}
    for k in range(50):
        label = ("billing", "delivery")[k % 2]
        sample[f"i{k}"] = {"label": label, "annotators": {"ann": label}, "guideline_version": 2}
        answers[f"i{k}"] = "account" if k in (1, 3, 5, 7, 9) else label
    audit_cli._render_report({"audit": 1, "auditor": "dora", "complete": True,
                              **audit_report(sample, answers, population=400)})
    text = console.export_text()
    assert text.count("systemic") == 1 and "systemic: 5 of 50 audited labels wrong (10.0%" in text
    assert "errors by label" in text and "│ delivery │ 25" in text and "errors by annotator" in text
    assert "5 disagreements wait for an adjudicator" in text
