"""Versioned labelling guidelines: one markdown file per version with YAML front matter.

    ---
    version: 1
    labels: {billing: "definition", ...}
    negatives: [out_of_scope]
    ---
    body in markdown

The newest version in the folder is the one in force. (Bumping versions and stamping labels with
them per item belongs to the guidelines issue; here a project reads its labels and version.)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from loop.errors import DataError


@dataclass(frozen=True)
class Guideline:
    version: int
    labels: dict[str, str]
    body: str
    path: Path
    negatives: list[str] = field(default_factory=list)

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()[:12]


def parse(path: Path) -> Guideline:
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---"):
        raise DataError(f"{path}: no front matter; start the file with a '---' block holding version and labels")
    try:
        _, front, body = text.split("---", 2)
        meta = yaml.safe_load(front) or {}
    except (ValueError, yaml.YAMLError) as exc:
        raise DataError(f"{path}: cannot read the front matter ({exc})") from None
    labels = meta.get("labels")
    if not isinstance(meta.get("version"), int) or not labels:
        raise DataError(f"{path}: front matter needs an integer 'version' and a non-empty 'labels' mapping")
    if isinstance(labels, list):
        labels = {str(lab): "" for lab in labels}
    return Guideline(version=meta["version"], labels={str(k): str(v or "") for k, v in labels.items()},
                     body=body.strip(), path=path, negatives=[str(n) for n in meta.get("negatives") or []])


def load_all(folder: str | Path) -> list[Guideline]:
    """Every version in the folder, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = sorted((parse(p) for p in folder.glob("v*.md")), key=lambda g: g.version)
    return found


def current(folder: str | Path) -> Guideline | None:
    versions = load_all(folder)
    return versions[-1] if versions else None
