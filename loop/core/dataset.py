"""Reading item files (JSONL, CSV, Parquet) into validated items with stable ids.

Validation happens here, once, at the boundary: a bad row names the file, the row number,
what is wrong and how to fix it, before anything is written anywhere.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from loop.errors import DataError

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}


@dataclass(frozen=True)
class Item:
    id: str
    text: str
    label: str | None = None


def text_key(text: str) -> str:
    """Content hash of a text: the key of its cached embedding."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# How much of a text the encoder reads. all-MiniLM-L6-v2 embeds at most ENCODER_MAX_TOKENS word
# pieces (its sentence_bert_config.json: max_seq_length 256, [CLS] and [SEP] included) and drops the
# rest. Rather than run the tokenizer, count characters: English runs about CHARS_PER_TOKEN
# characters per word piece (the model's own tokenizer gives 4.0 on examples/support_tickets.jsonl,
# 4.1 on banking77, 4.4 on trec, 3.6 on the README), so past LONG_TEXT_CHARS (254 pieces x 4 = 1,016
# characters) a text's end most likely never reaches its embedding. Text with fewer characters per
# piece (digits, code, many languages: 1.2 on armis) is cut sooner, so the warning errs on the quiet side.
ENCODER_MAX_TOKENS = 256
CHARS_PER_TOKEN = 4
LONG_TEXT_CHARS = (ENCODER_MAX_TOKENS - 2) * CHARS_PER_TOKEN
# A text no labelling task has: ~100 times what the encoder reads, ~25 pages. Only a mistake makes one
# (a document in a cell, a CSV quote left open), so `read_items` refuses it.
MAX_TEXT_CHARS = 100_000
LONG_TEXT_EXAMPLES = 5


def long_texts(items: Iterable[Item], limit: int = LONG_TEXT_CHARS) -> dict[str, Any]:
    """Which items are longer than the encoder reads: {"count", "limit" (characters), "longest"
    (characters, 0 when none), "examples": up to LONG_TEXT_EXAMPLES ids, longest first}. A warning,
    not an error: such an item is labelled and embedded like any other, from its beginning."""
    long = sorted(((len(i.text), i.id) for i in items if len(i.text) > limit), key=lambda t: -t[0])
    return {"count": len(long), "limit": limit, "longest": long[0][0] if long else 0,
            "examples": [item_id for _, item_id in long[:LONG_TEXT_EXAMPLES]]}


def long_text_warning(summary: dict[str, Any]) -> str | None:
    """One sentence for the user about `long_texts(...)`'s summary, or None when no text is long."""
    n = summary.get("count", 0)
    if not n:
        return None
    examples = ", ".join(map(str, summary["examples"])) + (", ..." if n > len(summary["examples"]) else "")
    return (f"{n} {'item is' if n == 1 else 'items are'} longer than {summary['limit']:,} characters (the longest "
            f"{summary['longest']:,}; {examples}): the encoder reads only about the first {summary['limit']:,} "
            f"characters ({ENCODER_MAX_TOKENS} word pieces) of a text, so the model never sees the rest; split "
            "long texts into several items, or put what decides the label first")


def _utf8_fix(path: Path, encoding: str = "WINDOWS-1252") -> str:
    """How to fix a text file that is not UTF-8 (`encoding`: the likely one it is in)."""
    spreadsheet = ", or Save As 'CSV UTF-8' in a spreadsheet" if path.suffix.lower() == ".csv" else ""
    return (f"save the file as UTF-8 (e.g. `iconv -f {encoding} -t UTF-8 {path.name} > NEW_FILE`{spreadsheet}) "
            "and run again")


def _not_utf8(where: str, data: bytes, start: int, offset: str, fix: str) -> DataError:
    """The error for the byte data[start]; `offset` says where it is ("byte offset 17")."""
    near = data[max(0, start - 20):start + 20].decode("utf-8", "backslashreplace")
    near = "".join(c if c.isprintable() else " " for c in near).strip()
    return DataError(f"{where}: byte 0x{data[start]:02x} at {offset} is not UTF-8 (near `{near}`); {fix}")


def first_bad_utf8(path: Path) -> tuple[int, int, bytes, int] | None:
    """Where `path` stops being UTF-8: (line number, byte offset in the file, that line's bytes, the
    offset in the line), or None. Lines split at b"\n", which is never part of a multi-byte character."""
    offset = 0
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return n, offset + exc.start, raw, exc.start
            offset += len(raw)
    return None


def not_utf8_error(path: Path) -> DataError:
    """A DataError naming the line and the byte offset where a text file stops being UTF-8 (for a
    reader that just met a UnicodeDecodeError on it), and how to fix the file."""
    with path.open("rb") as fh:
        head = fh.read(2)
    if head in (b"\xff\xfe", b"\xfe\xff"):
        return DataError(f"{path}: the file is UTF-16 text (it starts with a UTF-16 byte-order mark), not UTF-8; "
                         f"{_utf8_fix(path, 'UTF-16')}")
    found = first_bad_utf8(path)
    if found is None:  # cannot happen: the reader failed on this file
        return DataError(f"{path}: not UTF-8 text; {_utf8_fix(path)}")
    n, offset, raw, start = found
    return _not_utf8(f"{path}:{n}", raw, start, f"byte offset {offset} (line {n})", _utf8_fix(path))


def _json_error(path: Path, n: int, line: str, exc: json.JSONDecodeError) -> DataError:
    """Malformed JSON on line n: where (column) and what, in one sentence."""
    what = exc.msg.removesuffix(" at")  # json says "Invalid control character at" and puts the place after it
    if what == "Invalid control character" and exc.pos < len(line):
        char = line[exc.pos]
        what = f"a raw control character {char!r} inside a string (write it as {json.dumps(char)[1:-1]})"
    return DataError(f"{path}:{n}: not valid JSON at line {n}, column {exc.colno}: {what}; fix or remove that line")


PARQUET_UTF8_FIX = "write the file again with the column's texts as UTF-8 strings"


def _parquet_utf8_error(path: Path, column: str, values) -> DataError:
    """The first value of a Parquet column that is not UTF-8, by row (from 1) and byte offset in the value."""
    import pyarrow as pa

    for n, raw in enumerate(values.cast(pa.large_binary()).to_pylist(), start=1):
        try:
            (raw or b"").decode("utf-8")
        except UnicodeDecodeError as exc:
            return _not_utf8(f"{path}:{n}: column {column!r}", raw, exc.start,
                             f"byte offset {exc.start} of the value (row {n})", PARQUET_UTF8_FIX)
    return DataError(f"{path}: column {column!r} holds text that is not UTF-8; {PARQUET_UTF8_FIX}")


def decoded(path: Path, n: int, field: str, value: Any) -> Any:
    """`value`, or the text of a bytes value (a Parquet binary column: its values are left as bytes
    when one of them is not UTF-8); a DataError naming the row and the byte offset when it is not UTF-8."""
    if not isinstance(value, bytes):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _not_utf8(f"{path}:{n}: field {field!r}", value, exc.start,
                        f"byte offset {exc.start} of the value (row {n})", PARQUET_UTF8_FIX) from None


def _parquet_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DataError(f"{path}: cannot read as Parquet ({exc})") from None
    for i, field in enumerate(table.schema):
        kind = field.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            try:
                table.column(i).validate(full=True)  # Parquet strings are UTF-8, unless the writer did not check
            except pa.ArrowInvalid:
                raise _parquet_utf8_error(path, field.name, table.column(i)) from None
        elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            try:  # bytes that are UTF-8 are text; other bytes (an image, say) stay bytes
                table = table.set_column(i, field.name, table.column(i).cast(pa.large_string()))
            except pa.ArrowInvalid:
                pass
    try:
        rows = table.to_pylist()
    except UnicodeDecodeError:  # a string nested in a list or struct column
        raise DataError(f"{path}: a text inside a nested column is not UTF-8; {PARQUET_UTF8_FIX}") from None
    yield from enumerate(rows, start=1)


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number, row) of a JSONL, CSV or Parquet file; row numbers are line numbers for JSONL and
    CSV (the CSV header is line 1), the row's position from 1 for Parquet. Text must be UTF-8 (a BOM
    is allowed); anything else is a DataError naming the line and the byte offset of the first bad byte."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unknown file type {path.suffix!r}; use .jsonl, .csv or .parquet")
    if fmt == "parquet":
        yield from _parquet_rows(path)
        return
    try:
        if fmt == "jsonl":
            with path.open(encoding="utf-8-sig") as fh:  # -sig: tolerate a BOM
                for n, line in enumerate(fh, start=1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise _json_error(path, n, line, exc) from None
                    if not isinstance(row, dict):
                        raise DataError(f"{path}:{n}: expected a JSON object per line, got {type(row).__name__}")
                    yield n, row
        else:
            with path.open(encoding="utf-8-sig", newline="") as fh:
                for n, row in enumerate(csv.DictReader(fh), start=2):  # line 1 is the header
                    yield n, row
    except UnicodeDecodeError:
        raise not_utf8_error(path) from None


def existing_file(path: str | Path) -> Path:
    """`path` as a Path, or a DataError saying it is not there and where relative paths start."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; check the path (relative paths start at {Path.cwd()})")
    return path


def row_fields(path: Path, n: int, row: dict[str, Any], text_field: str, label_field: str | None,
               id_field: str | None) -> tuple[Any, str | None, str | None]:
    """(raw text, label, id) of one row, with the checks every reader shares: the text field is
    there, a label is stripped (empty -> None), an id column (`id_field`, else `id` when present)
    is filled. The id is None when the file has no id column."""
    if text_field not in row:
        fields = ", ".join(sorted(map(str, row))) or "none"
        raise DataError(f"{path}:{n}: no {text_field!r} field (fields: {fields}); pass --text-field")
    text = decoded(path, n, text_field, row[text_field])
    label = None
    if label_field is not None:
        raw = row.get(label_field)
        label = None if raw is None or str(raw).strip() == "" else str(raw).strip()
    id_col = id_field or ("id" if "id" in row else None)
    if id_col is None:
        return text, label, None
    if row.get(id_col) in (None, ""):
        raise DataError(f"{path}:{n}: the id field {id_col!r} is empty; give every row an id")
    return text, label, str(row[id_col])


def check_unique(path: Path, n: int, item_id: str, seen: dict[str, int], what: str) -> None:
    if item_id in seen:
        raise DataError(f"{path}:{n}: duplicate {what}, first seen at row {seen[item_id]}; "
                        "make ids unique or drop the duplicate")
    seen[item_id] = n


def read_items(path: str | Path, *, text_field: str = "text", label_field: str | None = None,
               id_field: str | None = None) -> list[Item]:
    """Read and validate every row of a dataset file.

    A text over MAX_TEXT_CHARS is an error; texts over LONG_TEXT_CHARS are read, and
    `long_texts(items)` says which (the encoder sees only their beginning).
    Ids come from `id_field` (default: an `id` column when the file has one), else from the
    text's content hash, so re-importing the same file gives the same ids.
    """
    path = existing_file(path)
    items: list[Item] = []
    seen: dict[str, int] = {}
    for n, row in _rows(path):
        text, label, item_id = row_fields(path, n, row, text_field, label_field, id_field)
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{path}:{n}: the {text_field!r} field is empty; fill it or drop the row")
        if len(text) > MAX_TEXT_CHARS:
            raise DataError(f"{path}:{n}: the {text_field!r} text is {len(text):,} characters long, over the "
                            f"{MAX_TEXT_CHARS:,} an item may have (the encoder reads about the first "
                            f"{LONG_TEXT_CHARS:,}): almost surely a mistake, such as a whole document in one cell "
                            "or an unclosed quote that swallowed the rows after it; fix the row or split the text "
                            "into several items")
        if item_id is None:
            item_id = "t" + text_key(text)[:16]
            check_unique(path, n, item_id, seen, "text (and there is no id field)")
        else:
            check_unique(path, n, item_id, seen, f"id {item_id!r}")
        items.append(Item(item_id, text, label))
    if not items:
        raise DataError(f"{path}: no rows; the pool needs at least one item")
    return items
