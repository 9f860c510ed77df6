"""Dataset checks for `loop validate`: contradictions, duplicates, near-duplicates, invalid labels,
empty inputs, class balance, missing negatives, train/test leakage and likely label errors.

A pure core: items and embeddings in, a JSON-serialisable report out. Reading files is
`read_records` (lenient: a defect in the data is something to report, not a reason to stop);
embedding is the caller's job (`loop.embeddings.embed_texts`, cached).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from loop.dataset import Item, _rows
from loop.errors import DataError
from loop.neighbours import near_pairs

NEAR_THRESHOLD = 0.95      # default cosine threshold for near-duplicates and near leakage
MINORITY_FRACTION = 0.1    # a class under this fraction of the largest class is flagged
MIN_CHARS = 3              # near-empty: fewer than this many non-space characters, or no letter/digit
DEFAULT_NEGATIVES = ("out_of_scope", "none", "refuse")   # used when the guidelines name none
NORMALISATION = "NFKC + casefold + whitespace"

_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """NFKC, str.casefold, runs of whitespace -> one space, strip.

    NFKC folds compatibility forms (full-width letters, ligatures, non-breaking spaces) into
    their plain equivalents; casefold is lower() plus the Unicode case foldings (ß -> ss).
    Punctuation is kept: "card arrived?" and "card arrived" are different inputs here.
    """
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def read_records(path: str | Path, *, text_field: str = "text", label_field: str = "label",
                 id_field: str | None = None) -> list[Item]:
    """Every row of a JSONL, CSV or Parquet file as an Item, for validation.

    Lenient where `loop.dataset.read_items` is strict: an empty or missing-value text is kept as ""
    (the empty-input check reports it) and duplicate texts are kept (the duplicate checks report
    them). A non-string text becomes str(x) (None -> ""). Labels are stripped; empty -> None.
    Ids come from `id_field`, else an `id` column when the row has one, else "row-<n>" with n the
    row's line number in the file (CSV: the header is line 1; Parquet: the row number from 1).
    Still errors (DataError): no such file, unknown type, a row without the text field, an empty
    id, a duplicate id, no rows at all.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; check the path (relative paths start at {Path.cwd()})")
    items: list[Item] = []
    seen: dict[str, int] = {}
    for n, row in _rows(path):
        if text_field not in row:
            fields = ", ".join(sorted(map(str, row))) or "none"
            raise DataError(f"{path}:{n}: no {text_field!r} field (fields: {fields}); pass --text-field")
        raw_text = row[text_field]
        text = "" if raw_text is None else raw_text if isinstance(raw_text, str) else str(raw_text)
        raw_label = row.get(label_field)
        label = None if raw_label is None or str(raw_label).strip() == "" else str(raw_label).strip()
        id_col = id_field or ("id" if "id" in row else None)
        if id_col is not None:
            if row.get(id_col) in (None, ""):
                raise DataError(f"{path}:{n}: the id field {id_col!r} is empty or missing; give every row an id")
            item_id = str(row[id_col])
        else:
            item_id = f"row-{n}"
        if item_id in seen:
            raise DataError(f"{path}:{n}: duplicate id {item_id!r}, first seen at row {seen[item_id]}; "
                            "make ids unique (or pass --id-field with a unique column)")
        seen[item_id] = n
        items.append(Item(item_id, text, label))
    if not items:
        raise DataError(f"{path}: no rows; nothing to validate")
    return items


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]  # path halving
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)


def _check_embeddings(name: str, embeddings: np.ndarray, n: int) -> np.ndarray:
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2 or embeddings.shape[0] != n:
        raise DataError(f"{name} has shape {embeddings.shape}, expected one row per item ({n} rows); "
                        "embed the items in the same order")
    return embeddings


def duplicate_clusters(items: Sequence[Item], embeddings: np.ndarray | None,
                       threshold: float = NEAR_THRESHOLD) -> list[int]:
    """One cluster id per item (same order): identical normalised texts and near-duplicate pairs
    (cosine >= threshold; skipped when embeddings is None) joined transitively.

    Ids are 0, 1, 2, ... in order of each cluster's first item, so they are stable for a given
    input. Export splits by these so that no cluster straddles train and test.
    """
    uf = _UnionFind(len(items))
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        j = first.setdefault(normalise(item.text), i)
        if j != i:
            uf.union(j, i)
    if embeddings is not None and len(items) > 1:
        for i, j, _ in near_pairs(_check_embeddings("embeddings", embeddings, len(items)), threshold):
            uf.union(i, j)
    ids: dict[int, int] = {}
    return [ids.setdefault(uf.find(i), len(ids)) for i in range(len(items))]
