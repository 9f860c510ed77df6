"""`loop release` and `loop releases list|diff`: numbered, immutable versions of the exported dataset.

A release is `loop export` (the same path: `workflows.curate.export_project`) written into a
temporary folder beside the releases, plus `manifest.json` (`curation.release.build_manifest`)
with every file's sha256; the files are made read-only and the folder renamed into place as
`<root>/project-<p>/vN`, then recorded in Redis with the manifest's own sha256. Items of the parent
release keep their split. A release whose items, texts, labels and splits equal its parent's is
not written. The gate: contradictions refuse a release as they refuse an export, and a systemic
verdict of the latest audit refuses it unless accepted with a note.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from loop.curation.release import (
    audit_gate,
    audit_summary,
    build_manifest,
    card_section,
    diff_manifests,
    same_data,
    sides,
    version_name,
    version_number,
)
from loop.errors import ConfigError, DataError, LoopError, NotInitialised
from loop.workflows.curate import export_project
from loop.workflows.progress import Progress, no_progress

RELEASES_DIR = "releases"
MANIFEST = "manifest.json"
_FOLDER = re.compile(r"v(\d+)")


class _Unchanged(Exception):
    """Raised from the card hook to stop a release whose data equals its parent's."""


def releases_folder(ctx, p: int, out_root: str | Path | None = None) -> Path:
    """Where project p's releases go: <out_root or the workspace's releases/>/project-<p>."""
    root = Path(out_root) if out_root else Path(ctx.workspace.root) / RELEASES_DIR
    return root.expanduser().resolve() / f"project-{p}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _checksums(folder: Path) -> dict[str, str]:
    """Relative path (POSIX) -> sha256 of every file under folder."""
    return {f.relative_to(folder).as_posix(): _sha256(f) for f in sorted(folder.rglob("*")) if f.is_file()}


def _seal(folder: Path) -> None:
    """Files read-only to their owner (0400), folders private (0700), like the rest of the workspace:
    a release can hold texts a team must not share beyond those allowed to read the workspace."""
    for path in folder.rglob("*"):
        os.chmod(path, 0o700 if path.is_dir() else 0o400)
    os.chmod(folder, 0o700)


def _known(store, p: int) -> list[str]:
    return [r["version"] for r in store.releases(p)]


def read_manifest(store, p: int, version: str) -> dict[str, Any]:
    """The manifest of a recorded release, checked against the sha256 recorded when it was written."""
    known = _known(store, p)
    name = version_name(version_number(version, known))
    record = store.release(p, name)
    if record is None:
        shown = ", ".join(known) if known else "none yet (`loop release` makes v1)"
        raise ConfigError(f"project {p} has no release {name}; its releases: {shown}")
    path = Path(record["path"]) / MANIFEST
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"release {name}'s manifest {path} cannot be read ({exc.strerror}); the folder was moved or "
                        "deleted: restore it from a copy") from None
    if hashlib.sha256(raw).hexdigest() != record.get("manifest_sha256"):
        raise DataError(f"release {name}'s manifest {path} changed since it was written (its sha256 differs from the "
                        "one recorded); a release is immutable: restore the original from a copy")
    return json.loads(raw)


def _next_number(store_records: list[dict], folder: Path) -> int:
    """One past both the newest recorded release and any vN folder already there (e.g. left by a
    release that died before it was recorded): a number is never reused."""
    names = [d.name for d in folder.iterdir()] if folder.is_dir() else []
    on_disk = [int(m.group(1)) for name in names if (m := _FOLDER.fullmatch(name))]
    return max([int(r["number"]) for r in store_records] + on_disk, default=0) + 1


def create_release(ctx, p: int, *, note: str | None = None, out_root: str | Path | None = None,
                   accept_audit: str | None = None, fmt: str = "jsonl", test_size: float = 0.2, seed: int = 0,
                   with_annotations: bool = False, allow_contradictions: bool = False,
                   near_threshold: float | None = None, progress: Progress = no_progress,
                   now: datetime | None = None) -> dict[str, Any]:
    """Write the next release of project p, or nothing when its data equals the latest release's.

    Returns {"created": True, "version", "path", "parent", "manifest_sha256", "items", "splits",
    "diff" (against the parent, None for v1), ...} or {"created": False, "latest", "message"}.
    """
    store = ctx.store
    if store.project(p) is None:
        raise NotInitialised(f"project {p} is unknown; `loop init DATA` creates one")
    note = note.strip() if note and note.strip() else None
    audit = audit_summary(store.latest_audit(p))
    accepted = audit_gate(audit, accept_audit)  # before any work: a refused release costs nothing
    records = store.releases(p)
    latest = records[-1] if records else None
    parent = read_manifest(store, p, latest["version"]) if latest else None

    folder = releases_folder(ctx, p, out_root)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    if out_root is None:  # the workspace's own releases/ folder: private like the workspace
        os.chmod(folder.parent, 0o700)
    number = _next_number(records, folder)
    target = folder / version_name(number)
    created_at = (now or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    built: dict[str, Any] = {}

    def on_card(facts: dict, splits: dict) -> dict:
        manifest = build_manifest(project_id=p, number=number, created_at=created_at,
                                  parent=latest["version"] if latest else None, note=note, splits=splits,
                                  facts=facts, audit=audit, accepted_audit=accepted, settings=facts["settings"])
        if parent is not None and same_data(parent, manifest):
            raise _Unchanged
        built["manifest"] = manifest
        built["diff"] = diff_manifests(parent, manifest) if parent is not None else None
        return card_section(manifest, built["diff"])

    tmp = folder / f".{target.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        exported = export_project(ctx, p, tmp, fmt=fmt, test_size=test_size, seed=seed,
                                  with_annotations=with_annotations, allow_contradictions=allow_contradictions,
                                  near_threshold=near_threshold, progress=progress, keep_sides=sides(parent),
                                  release=on_card)
        manifest = built["manifest"]
        manifest["files"] = _checksums(tmp)
        raw = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        (tmp / MANIFEST).write_bytes(raw)
        _seal(tmp)
        try:
            target.mkdir()  # the version's name, taken atomically: a concurrent release fails here
        except FileExistsError:
            raise LoopError(f"{target} appeared while this release was written (another `loop release`?); "
                            "run the command again") from None
        os.rename(tmp, target)  # onto the empty folder just made: the release appears whole
    except _Unchanged:
        shutil.rmtree(tmp, ignore_errors=True)
        return {"created": False, "project_id": p, "latest": latest["version"], "path": latest["path"],
                "message": f"nothing changed since {latest['version']} (same items, texts, labels and splits); "
                           "nothing written"}
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    sha = hashlib.sha256(raw).hexdigest()
    try:
        version = store.save_release(p, number, {"path": str(target), "created_at": created_at,
                                                 "manifest_sha256": sha, "parent": manifest["parent"], "note": note})
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)  # never recorded, so nobody can rely on it
        raise
    return {"created": True, "project_id": p, "version": version, "path": str(target), "parent": manifest["parent"],
            "created_at": created_at, "manifest_sha256": sha, "note": note, "accepted_audit": accepted,
            "items": manifest["counts"]["items"], "splits": manifest["counts"]["splits"],
            "files": sorted(manifest["files"]) + [MANIFEST], "contradictions": exported["contradictions"],
            "diff": built["diff"]}


def changed_files(folder: Path, manifest: dict[str, Any]) -> list[str]:
    """Files of a release that differ from its manifest's checksums: changed, missing or added."""
    found = {name: sha for name, sha in _checksums(folder).items() if name != MANIFEST}
    listed = manifest.get("files") or {}
    return sorted(name for name in set(found) | set(listed) if found.get(name) != listed.get(name))


def list_releases(ctx, p: int, *, verify: bool = False) -> list[dict[str, Any]]:
    """Every release of project p, oldest first, with its state ("ok", or why it is not: its
    manifest changed or is gone, or with `verify` a file that no longer matches its checksum)
    and, when intact, its item and split counts and audit verdict."""
    out = []
    for record in ctx.store.releases(p):
        row = {k: record.get(k) for k in ("version", "created_at", "parent", "note", "path", "manifest_sha256")}
        try:
            manifest = read_manifest(ctx.store, p, record["version"])
        except DataError as exc:
            out.append({**row, "state": str(exc), "items": None, "splits": None, "audit_verdict": None})
            continue
        changed = changed_files(Path(record["path"]), manifest) if verify else []
        state = f"files differ from the manifest's checksums: {', '.join(changed)}" if changed else "ok"
        out.append({**row, "state": state, "items": manifest["counts"]["items"], "splits": manifest["counts"]["splits"],
                    "audit_verdict": (manifest.get("audit") or {}).get("verdict"),
                    "accepted_audit": manifest.get("accepted_audit")})
    return out


def diff_releases(ctx, p: int, old: str, new: str) -> dict[str, Any]:
    """What changed from release `old` to release `new` (`curation.release.diff_manifests`)."""
    return {"project_id": p, **diff_manifests(read_manifest(ctx.store, p, old), read_manifest(ctx.store, p, new))}
