"""`loop release` and `loop releases list|diff`: numbered, immutable versions of the dataset and what
changed between them."""

from __future__ import annotations

from typing import Any, Optional

import typer
from rich.table import Table

from loop.cli.curate import NO_SYNC_OPTION, _sync
from loop.cli.defaults import NEAR_THRESHOLD
from loop.cli.output import (
    JSON_OPTION,
    PROJECT_OPTION_HELP,
    console,
    context,
    emit,
    err_console,
    handle_errors,
    progress_bars,
)

releases_app = typer.Typer(help="List a project's releases, or show what changed between two of them.",
                           no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("release")(release)
    app.add_typer(releases_app, name="releases")


@handle_errors
def release(
    note: Optional[str] = typer.Option(None, help="What this version is for; kept in the manifest and the card."),
    accept_audit: Optional[str] = typer.Option(
        None, "--accept-audit", metavar="NOTE",
        help="Release although the latest audit's verdict is systemic; NOTE says why (manifest and card keep it)."),
    allow_contradictions: bool = typer.Option(
        False, "--allow-contradictions", help="Release even when identical inputs carry different labels (the card says so)."),
    out_root: Optional[str] = typer.Option(
        None, "--out-root", metavar="DIR", help="Folder holding project-P/vN for project P (default: the workspace's releases/)."),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl, csv, parquet, or hf, as `loop export` writes them."),
    test_size: float = typer.Option(0.2, help="Share of new items in the test split; earlier items keep their side."),
    seed: int = typer.Option(0, help="Seed of the split of new items and the label-error check."),
    with_annotations: bool = typer.Option(False, "--with-annotations", help="Add every annotator's raw label to each row."),
    near_threshold: float = typer.Option(NEAR_THRESHOLD, help="Cosine similarity from which items share a duplicate cluster."),
    project: Optional[int] = typer.Option(None, help=PROJECT_OPTION_HELP),
    no_sync: bool = NO_SYNC_OPTION,
    as_json: bool = JSON_OPTION,
):
    """Write the next numbered release (v1, v2, ...) of the project's final labels: the files of
    `loop export`, a data card saying what changed since the previous release, and manifest.json
    (each item's text hash, label, how it was decided, guideline version and split; the release's
    guideline version, aggregation, model, agreement, latest audit, validator summary, parent and
    note; every file's sha256). Files are read-only and never rewritten; items of earlier releases
    keep their split. With nothing changed since the latest release (same items, texts, labels and
    splits) it says so and writes nothing.

    Refused while contradictions exist (unless --allow-contradictions) and when the latest audit
    found systemic errors (unless --accept-audit NOTE).

    Example: `loop release --note "after round 7"`, then `loop releases diff v1 v2`.
    """
    from loop.workflows.release import create_release

    ctx = context()
    p = ctx.project_id(project)
    _sync(ctx, p, no_sync)
    with progress_bars(not as_json) as bars:
        result = create_release(ctx, p, note=note, out_root=out_root, accept_audit=accept_audit, fmt=fmt,
                                test_size=test_size, seed=seed, with_annotations=with_annotations,
                                allow_contradictions=allow_contradictions, near_threshold=near_threshold,
                                progress=bars)

    def render(r: dict[str, Any]) -> None:
        if not r["created"]:
            console.print(f"Nothing changed since {r['latest']} ({r['path']}); nothing written.")
            return
        sizes = ", ".join(f"{name} {n}" for name, n in r["splits"].items())
        console.print(f"[bold]Released {r['version']}[/] of project {r['project_id']}: {r['items']} items ({sizes}) "
                      f"in {r['path']}")
        d = r["diff"]
        if d:
            console.print(f"  since {d['from']}: {len(d['added'])} added, {len(d['removed'])} removed, "
                          f"{len(d['label_changes'])} labels changed, {len(d['split_moves'])} split moves "
                          f"(`loop releases diff {d['from']} {d['to']}`)")
        else:
            console.print("  first release")
        if r["accepted_audit"]:
            err_console.print(f"[bold yellow]Warning[/]: released despite a systemic audit verdict: {r['accepted_audit']}")
        if r["contradictions"]:
            err_console.print(f"[bold yellow]Warning[/]: released with {r['contradictions']} contradictions "
                              "(--allow-contradictions); the data card records it")

    emit(result, as_json, render)


@releases_app.command("list")
@handle_errors
def list_(
    verify: bool = typer.Option(False, "--verify", help="Also check every file against the manifest's sha256."),
    project: Optional[int] = typer.Option(None, help=PROJECT_OPTION_HELP),
    as_json: bool = JSON_OPTION,
):
    """Every release of the project, oldest first: when, its parent, items and splits, audit verdict,
    note, folder, and whether its manifest is intact (same sha256 as when it was written); with
    --verify, whether every file still matches its checksum."""
    from loop.workflows.release import list_releases

    ctx = context()
    p = ctx.project_id(project)
    rows = list_releases(ctx, p, verify=verify)

    def render(rows: list[dict[str, Any]]) -> None:
        if not rows:
            console.print(f"Project {p} has no release yet; `loop release --note TEXT` makes v1.")
            return
        table = Table("version", "created", "parent", "items", "splits", "audit", "note", "state", "folder")
        for r in rows:
            splits = ", ".join(f"{k} {v}" for k, v in (r["splits"] or {}).items()) or "-"
            table.add_row(r["version"], r["created_at"] or "-", r["parent"] or "-", str(r["items"] or "-"), splits,
                          r["audit_verdict"] or "-", r["note"] or "", r["state"], r["path"])
        console.print(table)

    emit(rows, as_json, render)


@releases_app.command("diff")
@handle_errors
def diff(
    old: str = typer.Argument(..., help="The earlier release, e.g. v1."),
    new: str = typer.Argument(..., help="The later release, e.g. v2."),
    show: int = typer.Option(20, help="Items listed per change (--json has them all)."),
    project: Optional[int] = typer.Option(None, help=PROJECT_OPTION_HELP),
    as_json: bool = JSON_OPTION,
):
    """What changed between two releases: items added and removed, labels changed (with the guideline
    versions behind the old and new label), split moves, class-balance shift, agreement and audit."""
    from loop.workflows.release import diff_releases

    ctx = context()
    p = ctx.project_id(project)
    d = diff_releases(ctx, p, old, new)

    def ids(items: list[str]) -> str:
        return ", ".join(items[:show]) + (f" … {len(items) - show} more" if len(items) > show else "")

    def render(d: dict[str, Any]) -> None:
        console.print(f"[bold]{d['from']} -> {d['to']}[/]" + (" (same items, texts, labels and splits)"
                                                              if d["same_data"] else ""))
        for what, items in (("added", d["added"]), ("removed", d["removed"]), ("texts changed", d["text_changes"])):
            console.print(f"  {what}: {len(items)}" + (f" ({ids(items)})" if items else ""), highlight=False)
        console.print(f"  labels changed: {len(d['label_changes'])}")
        for c in d["label_changes"][:show]:
            console.print(f"    {c['id']}: {c['old']} (guideline {c['old_guideline_version']}, {c['old_decided_by']}) "
                          f"-> {c['new']} (guideline {c['new_guideline_version']}, {c['new_decided_by']})",
                          markup=False, highlight=False)
        console.print(f"  split moves: {len(d['split_moves'])}")
        for m in d["split_moves"][:show]:
            console.print(f"    {m['id']}: {m['old']} -> {m['new']}", markup=False, highlight=False)
        table = Table("label", d["from"], d["to"], "change", "share before", "share after", title="class balance")
        for lab, b in d["balance"].items():
            table.add_row(lab, str(b["before"]), str(b["after"]), f"{b['change']:+d}", f"{b['share_before']:.1%}",
                          f"{b['share_after']:.1%}")
        console.print(table)
        ag = d["agreement"]
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        console.print(f"  Krippendorff's alpha: {fmt((ag['before'] or {}).get('alpha'))} -> "
                      f"{fmt((ag['after'] or {}).get('alpha'))}")
        au = d["audit"]
        said = lambda a: "none" if not a else f"#{a['id']} by {a.get('auditor')}: {a.get('verdict') or a.get('status')}"  # noqa: E731
        console.print(f"  latest audit: {said(au['before'])} -> {said(au['after'])}", highlight=False)

    emit(d, as_json, render)
