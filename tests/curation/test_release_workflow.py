"""Releases of a project: written whole and read-only with a manifest that checks out, recorded in
Redis, nothing written when nothing changed, the diff naming what changed, the audit and
contradiction gates. The sample project of the curation tests in the real test Redis, with the
fake Label Studio (the fixtures of tests/curation/conftest.py)."""

from __future__ import annotations

import hashlib
import json
import os
import stat

import pytest

from loop.errors import ConfigError, DataError
from loop.workflows.release import MANIFEST, create_release, diff_releases, list_releases, read_manifest
from tests.curation.sample_project import LABELS_OF, P, build_project, make_ctx, read_back

RELABELLED = "it10"  # unanimous "technical" under v1; relabelled "account" under v2 below



def relabel(store, annotations, item, label, version=2):
    changed = {aid: ({**a, "label": label, "guideline_version": version} if a["item_id"] == item else a)
               for aid, a in annotations.items()}
    store.replace_annotations(P, changed)
    return changed


def files_of(folder):
    return {f.relative_to(folder).as_posix(): f for f in folder.rglob("*") if f.is_file()}


def test_a_release_is_the_export_with_a_manifest_sealed_and_recorded(ctx, tmp_path):
    root = tmp_path / "releases"
    r = create_release(ctx, P, note="pilot", out_root=root)
    folder = root / f"project-{P}" / "v1"
    assert r["created"] and r["version"] == "v1" and r["path"] == str(folder) and r["parent"] is None
    assert sorted(files_of(folder)) == ["README.md", "learning_curve.png", MANIFEST, "test.jsonl", "train.jsonl",
                                        "validation.json"]
    assert [p.name for p in folder.parent.iterdir()] == ["v1"]  # no temporary folder left behind
    manifest = json.loads((folder / MANIFEST).read_text())
    # every file but the manifest has its checksum; the manifest's own is in Redis
    assert manifest["files"] == {name: hashlib.sha256(f.read_bytes()).hexdigest()
                                 for name, f in files_of(folder).items() if name != MANIFEST}
    record = ctx.store.release(P, "v1")
    assert record["manifest_sha256"] == hashlib.sha256((folder / MANIFEST).read_bytes()).hexdigest()
    assert (record["path"], record["note"], record["parent"]) == (str(folder), "pilot", None)
    # read-only files, private like the workspace (no group or other access anywhere)
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o400 for f in files_of(folder).values())
    # (a folder given with --out-root is the user's; the workspace's own releases/ is made 0700 too,
    # which tests/integration/test_security.py checks with every file of the workspace)
    assert {stat.S_IMODE(d.stat().st_mode) for d in (folder, folder.parent)} == {0o700}
    # the items are the exported rows, on the sides the export put them
    rows = {name: read_back(folder / f"{name}.jsonl", "jsonl") for name in ("train", "test")}
    assert {e["id"]: (e["label"], e["split"]) for e in manifest["items"]} == {
        r["id"]: (r["label"], name) for name, part in rows.items() for r in part}
    assert len(manifest["items"]) == len(LABELS_OF) and manifest["counts"]["items"] == len(LABELS_OF)
    it01 = next(e for e in manifest["items"] if e["id"] == "it01")
    assert it01["sha256"] == hashlib.sha256(ctx.ls.texts["it01"].encode()).hexdigest()
    assert (manifest["guideline_version"], manifest["parent"], manifest["note"]) == (2, None, "pilot")
    assert manifest["audit"] is None and manifest["aggregation"] == "hierarchical-ds"  # the default policy
    assert manifest["validation"]["ok"] and manifest["validation"]["checks"]["contradictions"] == 0
    assert manifest["agreement"]["alpha"] is not None
    card = (folder / "README.md").read_text()
    assert "## First release" in card and "Release v1" in card and "Note: pilot" in card
    assert list_releases(ctx, P)[0] | {"created_at": None} == {
        "version": "v1", "created_at": None, "parent": None, "note": "pilot", "path": str(folder),
        "manifest_sha256": record["manifest_sha256"], "state": "ok", "items": len(LABELS_OF),
        "splits": manifest["counts"]["splits"], "audit_verdict": None, "accepted_audit": None}


def test_no_change_writes_nothing_then_a_relabel_makes_v2_naming_exactly_it(ctx, project, tmp_path):
    from loop.workflows.training import set_policy

    # Majority vote: under Dawid-Skene one relabel can tip another item's tie (it21's), which the diff
    # would rightly report too; here the relabelled item must be the only change.
    set_policy(ctx.store, P, aggregation="majority")
    root = tmp_path / "releases"
    create_release(ctx, P, out_root=root)
    v1 = root / f"project-{P}" / "v1"
    before = {name: f.read_bytes() for name, f in files_of(v1).items()}

    again = create_release(ctx, P, out_root=root, note="nothing new")
    assert again == {"created": False, "project_id": P, "latest": "v1", "path": str(v1),
                     "message": again["message"]}
    assert again["message"].startswith("nothing changed since v1")
    assert sorted(p.name for p in v1.parent.iterdir()) == ["v1"]
    assert [r["version"] for r in ctx.store.releases(P)] == ["v1"]

    relabel(ctx.store, project["annotations"], RELABELLED, "account")
    r = create_release(ctx, P, out_root=root, note="it10 relabelled")
    assert r["created"] and r["version"] == "v2" and r["parent"] == "v1"
    d = r["diff"]
    assert d["label_changes"] == [{"id": RELABELLED, "old": "technical", "new": "account",
                                   "old_guideline_version": 1, "new_guideline_version": 2,
                                   "old_decided_by": "unanimous", "new_decided_by": "unanimous"}]
    assert d["added"] == d["removed"] == d["split_moves"] == d["text_changes"] == []  # every item kept its side
    assert d["balance"]["technical"]["change"] == -1 and d["balance"]["account"]["change"] == 1
    assert diff_releases(ctx, P, "v1", "2") == {"project_id": P, **d}
    assert {name: f.read_bytes() for name, f in files_of(v1).items()} == before  # v1 untouched
    card = (root / f"project-{P}" / "v2" / "README.md").read_text()
    assert "## Changes since v1" in card and "- Labels changed: 1" in card
    assert f"| {RELABELLED} | technical | account | 1 -> 2 |" in card
    assert ctx.store.release(P, "v2")["parent"] == "v1"


def test_verify_finds_a_data_file_changed_after_the_release(ctx, tmp_path):
    root = tmp_path / "releases"
    create_release(ctx, P, out_root=root)
    train = root / f"project-{P}" / "v1" / "train.jsonl"
    os.chmod(train, 0o644)
    train.write_text(train.read_text().replace('"technical"', '"account"'))
    assert list_releases(ctx, P)[0]["state"] == "ok"  # the manifest alone is intact
    assert list_releases(ctx, P, verify=True)[0]["state"] == "files differ from the manifest's checksums: train.jsonl"


def test_unknown_versions_name_the_known_ones_and_a_changed_manifest_is_refused(ctx, project, tmp_path):
    root = tmp_path / "releases"
    create_release(ctx, P, out_root=root)
    with pytest.raises(ConfigError, match="no release v3; its releases: v1"):
        diff_releases(ctx, P, "v1", "v3")
    with pytest.raises(ConfigError, match="not a release version.*known: v1"):
        diff_releases(ctx, P, "first", "v1")
    manifest = root / f"project-{P}" / "v1" / MANIFEST
    os.chmod(manifest, 0o644)
    manifest.write_text(manifest.read_text().replace('"technical"', '"account"'))
    with pytest.raises(DataError, match="changed since it was written"):
        read_manifest(ctx.store, P, "v1")
    assert "changed since it was written" in list_releases(ctx, P)[0]["state"]
    with pytest.raises(DataError, match="changed since it was written"):  # nor is a release built on it
        create_release(ctx, P, out_root=root)


def test_a_systemic_audit_refuses_the_release_unless_accepted(ctx, tmp_path):
    report = {"verdict": "systemic", "accuracy": 0.86, "interval": [0.74, 0.93], "n_answered": 50, "n_errors": 7}
    record = {"auditor": "dora", "created_at": 5.0, "status": "reported", "report": report, "population": 26,
              "sample": ["it01", "it02"], "seed": 0, "scope": {"round": None}, "stratify": None}
    n = ctx.store.plan_audit(P, record, {})
    root = tmp_path / "releases"
    with pytest.raises(DataError, match=f"audit \\(#{n} by dora\\) found systemic errors.*--accept-audit"):
        create_release(ctx, P, out_root=root)
    assert not (root / f"project-{P}").exists() and ctx.store.releases(P) == []
    r = create_release(ctx, P, out_root=root, accept_audit="billing errors fixed by round 3's relabels")
    manifest = json.loads((root / f"project-{P}" / "v1" / MANIFEST).read_text())
    assert manifest["accepted_audit"] == r["accepted_audit"] == "billing errors fixed by round 3's relabels"
    assert manifest["audit"] | {"created_at": None} == {"id": n, "auditor": "dora", "created_at": None,
                                                        "status": "reported", "verdict": "systemic",
                                                        "accuracy": 0.86, "interval": [0.74, 0.93],
                                                        "n_answered": 50, "n_errors": 7}
    card = (root / f"project-{P}" / "v1" / "README.md").read_text()
    assert "Released despite a systemic audit verdict" in card and "billing errors fixed by round 3" in card


def test_contradictions_refuse_a_release_unless_allowed(redis_store, tmp_path, embedder, fake_ls):
    project = build_project(redis_store, tmp_path, contradiction=True)
    ctx = make_ctx(redis_store, tmp_path, embedder, fake_ls, project["texts"])
    root = tmp_path / "releases"
    with pytest.raises(DataError, match="carry different labels.*--allow-contradictions"):
        create_release(ctx, P, out_root=root)
    assert [p.name for p in (root / f"project-{P}").iterdir()] == [] and redis_store.releases(P) == []
    r = create_release(ctx, P, out_root=root, allow_contradictions=True)
    assert r["created"] and r["contradictions"] == 1
    manifest = json.loads((root / f"project-{P}" / "v1" / MANIFEST).read_text())
    assert manifest["validation"]["blockers"] == ["contradictions"] and manifest["validation"]["allow_contradictions"]


def test_a_left_over_folder_is_never_reused(ctx, tmp_path):
    root = tmp_path / "releases"
    (root / f"project-{P}" / "v1").mkdir(parents=True)  # e.g. a release that died before Redis recorded it
    r = create_release(ctx, P, out_root=root)
    assert r["version"] == "v2" and r["parent"] is None
