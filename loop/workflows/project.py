"""Setting up a project (`loop init`) and putting a guideline version in force (`loop guidelines bump`)."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from loop.core.dataset import long_texts, read_items, text_key
from loop.core.embeddings import cache_key, embed_texts, model_of
from loop.core.stopping import STOP_SET_SIZE
from loop.errors import ConfigError, DataError, LabelStudioError
from loop.labels.guidelines import current as current_guideline
from loop.labels.guidelines import get as get_guideline
from loop.labels.interface import LABEL_CHANGES, MAIN_TAB, MAIN_TAB_HIDDEN, config_labels, label_config
from loop.services import ray_engine
from loop.services.context import Context
from loop.workflows.progress import Progress, no_progress
from loop.workflows.queues import queue_projects


def resolve_labels(labels: Sequence[str] | None, guidelines_dir: str | Path | None,
                   data_labels: Sequence[str | None]) -> tuple[list[str], Any]:
    """The label set: --labels, else the guidelines in force, else the label field's values."""
    guideline = current_guideline(guidelines_dir) if guidelines_dir else None
    if labels:
        out = [lab.strip() for lab in labels if lab.strip()]
    elif guideline is not None:
        out = list(guideline.labels)
    else:
        out = sorted({lab for lab in data_labels if lab is not None})
    if len(out) < 2:
        raise ConfigError("a project needs at least two labels; pass --labels A,B,C or a guidelines folder "
                          "(--guidelines) whose newest version lists them")
    if len(set(out)) != len(out):
        raise ConfigError(f"--labels lists a label twice: {', '.join(out)}")
    if guideline is not None and set(out) != set(guideline.labels):
        raise ConfigError(f"--labels ({', '.join(out)}) differ from guidelines v{guideline.version} "
                          f"({', '.join(guideline.labels)}); drop --labels or edit the guidelines")
    return out, guideline


def init_project(ctx: Context, data: str | Path, *, text_field: str = "text", label_field: str | None = None,
                 id_field: str | None = None, labels: Sequence[str] | None = None,
                 guidelines_dir: str | Path | None = None, project_id: int | None = None,
                 title: str | None = None, dev: str | Path | None = None, connect_backend: bool = True,
                 assisted: bool | None = None, progress: Progress = no_progress,
                 engine: str | None = None) -> dict[str, Any]:
    """Create (or link) a Label Studio project, import the items and embed them once.

    `assisted`: annotators see the model's answer pre-ticked (for one annotator per item; rounds
    with a larger overlap are refused); None keeps what the project has (off for a new one).
    `engine`: where the texts are embedded, `local` or `ray` (`services.ray_engine`); None: `ray`
    when LOOP_RAY_ADDRESS is set.

    Safe to re-run: items already imported are skipped and cached embeddings are reused.
    """
    data = Path(data)
    items = read_items(data, text_field=text_field, label_field=label_field, id_field=id_field)
    label_set, guideline = resolve_labels(labels, guidelines_dir, [i.label for i in items])
    unknown = Counter(i.label for i in items if i.label is not None and i.label not in label_set)
    if unknown:
        lab, n = unknown.most_common(1)[0]
        raise DataError(f"{data}: {sum(unknown.values())} rows have labels outside {', '.join(label_set)} "
                        f"(e.g. {lab!r} x{n}); fix the rows or the label set")

    dev_items = []
    if dev is not None:
        dev_items = read_items(dev, text_field=text_field, label_field=label_field or "label", id_field=id_field)
        bad = [i for i in dev_items if i.label not in label_set]
        if bad:
            raise DataError(f"{dev}: {len(bad)} dev rows have no label or one outside {', '.join(label_set)} "
                            f"(e.g. item {bad[0].id}: {bad[0].label!r}); the dev set must be fully labelled")

    embedder = ray_engine.embedder(ctx.settings, engine, ctx.embedder)  # `engine` local or ray: where it runs
    store, ls = ctx.store, ctx.ls
    ls.check()

    # Embed first: the slow step that needs nothing from Label Studio, and a crash here writes nothing.
    advance = progress("embedding", len(items))
    _, n_embedded = embed_texts([i.text for i in items], ctx.cache, embedder, progress=advance)
    if dev_items:
        embed_texts([i.text for i in dev_items], ctx.cache, embedder,
                    progress=progress("embedding dev set", len(dev_items)))

    source = str(data.resolve())
    if project_id is None:
        previous = store.current_project()
        record = store.project(previous) if previous is not None else None
        if record and record.get("source") == source and not title:
            project_id = previous  # re-running `loop init` on the same file resumes that project
    description = guideline.html if guideline else ""
    if project_id is None:
        project_id = ls.create_project(title or f"loop: {data.stem}", label_set, description)
        linked = False
    else:
        config = ls.project(project_id).get("label_config", "")
        missing = [lab for lab in label_set if lab not in config_labels(config)]
        if missing:
            raise LabelStudioError(f"Label Studio project {project_id} has no choice for {', '.join(missing)} "
                                   "in a <Choices name=\"label\"> control; create a new project instead")
        linked = True
    existing = store.project(project_id) or {}
    assisted = bool(existing.get("assisted")) if assisted is None else assisted
    # Annotators' labels must be their own: no pre-ticked answer unless assisted (also on a linked
    # project, or one an earlier version of loop created with pre-labelling on).
    ls.update_project(project_id, show_collab_predictions=assisted)
    record = {
        "id": project_id, "labels": label_set, "text_field": text_field, "label_field": label_field,
        "id_field": id_field,
        "source": source, "created_at": existing.get("created_at", time.time()),
        "guideline_version": guideline.version if guideline else None,
        "guideline_hash": guideline.content_hash if guideline else None,
        "guidelines_dir": str(Path(guidelines_dir).resolve()) if guidelines_dir else None,
        "assisted": assisted,
    }
    if dev_items:
        dev_keys = [cache_key(i.text, model_of(ctx.embedder)) for i in dev_items]  # this engine's vectors
        record["dev"] = {"source": str(Path(dev).resolve()), "keys": dev_keys,
                         "labels": [i.label for i in dev_items]}
    store.save_project(project_id, record)

    # Import only what the project does not hold yet (matched by our item id in the task data).
    already = ls.task_item_ids(project_id)
    todo = [i for i in items if i.id not in already]
    advance = progress("importing", len(todo)) if todo else None
    task_ids = ls.import_tasks(project_id, [{"text": i.text, "item_id": i.id} for i in todo], progress=advance)
    known = {**already, **dict(zip((i.id for i in todo), task_ids))}
    # The texts go to Redis too: any process (the trainer in its container) can embed an item itself.
    store.add_items(project_id, {i.id: {"task_id": known[i.id], "key": text_key(i.text)} for i in items},
                    texts={i.id: i.text for i in items})

    # A frozen random stop set, for the stopping rule (kept once, never redrawn).
    if "stop_set" not in existing:
        rng = random.Random(project_id)
        ids = sorted(i.id for i in items)
        store.save_project(project_id, {"stop_set": sorted(rng.sample(ids, min(STOP_SET_SIZE, len(ids))))})

    backend = None
    if connect_backend:
        url = ctx.settings.backend_url
        auth = ctx.workspace.backend_login()
        backend = ls.connect_ml_backend(project_id, url, auth=auth)
        ls.ensure_webhook(project_id, f"{url}/webhook", LABEL_CHANGES, auth=auth)
    ls.ensure_view(project_id, MAIN_TAB, hidden_columns=MAIN_TAB_HIDDEN)  # operators see labels, scores, who
    return {"project_id": project_id, "linked": linked, "items": len(items), "imported": len(todo),
            "embedded": n_embedded, "labels": label_set, "ml_backend": backend,
            "guideline_version": record["guideline_version"], "dev_items": len(dev_items), "assisted": assisted,
            "long_texts": long_texts(items),
            "url": f"{ctx.settings.ls_url}/projects/{project_id}"}


def apply_guideline(ctx: Context, p: int, version: int | None = None) -> dict[str, Any]:
    """Make a guideline version the one in force for project p: Label Studio's label config and
    instructions, and the version (and content hash) new labels are stamped with."""
    project = ctx.store.project(p)
    folder = project.get("guidelines_dir")
    if not folder:
        raise ConfigError(f"project {p} was not set up with guidelines; re-run `loop init` with --guidelines DIR")
    g = get_guideline(folder, version)
    labels = list(g.labels)
    # Label Studio refuses a config that drops a label already used in annotations: its message says which.
    # The annotators' queues are projects too: the same config and instructions.
    for ls_project in [p, *queue_projects(ctx.store, p).values()]:
        ctx.ls.update_project(ls_project, label_config=label_config(labels), expert_instruction=g.html,
                              show_instruction=True)
    ctx.store.save_project(p, {"labels": labels, "guideline_version": g.version, "guideline_hash": g.content_hash},
                           make_current=False)
    return {"project_id": p, "guideline_version": g.version, "guideline_hash": g.content_hash, "labels": labels,
            "previous_version": project.get("guideline_version")}
