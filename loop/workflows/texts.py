"""The texts of a project's items, wherever they are: for the export, the validator and the queues.

The texts `loop init` kept in Redis first, then the project's data file, then Label Studio's main
project; a text is taken only when its content hash is the one stored at `loop init`, so an edited
file never relabels another text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from loop.core.dataset import read_items, text_key
from loop.errors import DataError, LoopError


def project_texts(ctx, p: int, project: Mapping, item_ids: Iterable[str]) -> tuple[dict[str, str], str]:
    """item id -> text for `item_ids`, and where the texts came from ("redis", "source" or "label-studio").

    The texts `loop init` kept in Redis first, then the project's data file (re-read with its text
    and id fields), keeping only texts whose content hash is the one stored at `loop init` (an
    edited file must not relabel other texts); when the file is gone, changed, or lacks items, the
    texts of the Label Studio tasks.
    """
    needed = set(item_ids)
    keys = {i: v.get("key") for i, v in ctx.store.items(p).items()}
    texts = {i: t for i, t in ctx.store.item_texts(p, sorted(needed)).items() if keys.get(i) == text_key(t)}
    if len(texts) == len(needed):
        return texts, "redis"
    why = "the project record names no data file"
    source = project.get("source")
    if source:
        try:
            for it in read_items(source, text_field=project.get("text_field") or "text",
                                 id_field=project.get("id_field")):
                if it.id in needed and keys.get(it.id) in (None, text_key(it.text)):
                    texts[it.id] = it.text
            why = f"{source} lacks them or their text changed since `loop init`"
        except DataError as exc:
            why = str(exc)
    missing = needed - set(texts)
    if not missing:
        return texts, "source"
    try:
        from_ls = ctx.ls.task_texts(p)
    except LoopError as exc:
        raise DataError(f"{len(missing)} labelled items have no text ({why}), and Label Studio could not "
                        f"supply them: {exc}") from None
    texts.update({i: from_ls[i] for i in missing if i in from_ls})
    still = sorted(needed - set(texts))
    if still:
        raise DataError(f"{len(still)} labelled items (e.g. {still[0]!r}) have no text in the data file ({why}) "
                        "nor in Label Studio's tasks; restore the data file the project was created from")
    return texts, "label-studio"
