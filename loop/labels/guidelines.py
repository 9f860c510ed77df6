"""Versioned labelling guidelines: one markdown file per version with YAML front matter.

    ---
    version: 1
    labels: {billing: "definition", ...}
    negatives: [out_of_scope]
    ---
    body in markdown

The newest version in the folder is the one in force. `bump` writes the next version from an
edited file and records a changelog line in `CHANGELOG.md` next to the versions. `to_html` (and
`Guideline.html`) renders a body for Label Studio's instructions, which show HTML, not markdown.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import yaml
from markdown_it import MarkdownIt

from loop.core.dataset import not_utf8_error
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

    @property
    def html(self) -> str:
        """The body as HTML: what Label Studio's `expert_instruction` should hold (see `to_html`)."""
        return to_html(self.body)


def to_html(markdown_text: str) -> str:
    """Markdown to HTML for Label Studio's instructions (a project's `expert_instruction`).

    CommonMark plus tables and strikethrough (markdown-it-py, MIT). Raw HTML in the markdown is
    escaped and shown as text, never passed through: Label Studio's own cleaning of
    `expert_instruction` (bleach with `label_studio/constants.py`'s SAFE_HTML_TAGS) lets
    `<script>` and `<iframe>` through, and every annotator's browser runs what the instructions
    hold. markdown-it also refuses javascript:, vbscript: and file: links (they stay text).
    """
    return MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"]).render(markdown_text)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise not_utf8_error(path) from None


def parse(path: Path) -> Guideline:
    text = _read(path)
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


def get(folder: str | Path, version: int | None = None) -> Guideline:
    versions = load_all(folder)
    if not versions:
        raise DataError(f"{folder}: no guideline versions (v1.md, v2.md, ...); see guidelines/README.md")
    if version is None:
        return versions[-1]
    for g in versions:
        if g.version == version:
            return g
    raise DataError(f"{folder}: no version {version}; there are {', '.join(str(g.version) for g in versions)}")


def bump(folder: str | Path, edited: str | Path, note: str) -> Guideline:
    """Write `edited` as the next version (its front matter's version is set for you) and log `note`.

    The edited file is validated first; nothing is written if it is malformed or unchanged.
    """
    folder, edited = Path(folder), Path(edited)
    if not note.strip():
        raise DataError("a bump needs a changelog line: --note \"what changed and why\"")
    if not edited.is_file():
        raise DataError(f"{edited}: no such file; edit a copy of the current version and pass its path")
    latest = get(folder)
    text = _read(edited)
    if not text.startswith("---"):
        raise DataError(f"{edited}: no front matter; start from a copy of {latest.path.name}")
    _, front, body = text.split("---", 2)
    try:
        meta = yaml.safe_load(front) or {}
    except yaml.YAMLError as exc:
        raise DataError(f"{edited}: cannot read the front matter ({exc})") from None
    version = latest.version + 1
    meta["version"] = version
    new_text = "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---" + body
    if body.strip() == latest.body and meta.get("labels") == latest.labels and \
            list(meta.get("negatives") or []) == latest.negatives:
        raise DataError(f"{edited} does not change anything from v{latest.version}; edit it first")
    target = folder / f"v{version}.md"
    tmp = target.with_suffix(".tmp")
    tmp.write_text(new_text, encoding="utf-8")
    parse(tmp)  # validates labels and version before the version exists
    tmp.replace(target)
    with (folder / "CHANGELOG.md").open("a", encoding="utf-8") as log:
        log.write(f"- v{version} ({date.today().isoformat()}): {note.strip()}\n")
    return parse(target)
