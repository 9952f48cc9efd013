"""Crash injection: a database wrapper that dies at the k-th write.

``FaultyDB`` wraps the database a Backend hands to the models (``ctx.db``) and
counts write calls (``WRITES``). At write number ``at`` it acts as ``when`` says:

    before   raise Crash instead of sending the write (the process died first)
    after    send the write, then raise Crash (done, but the reply was lost)
    first    a bulk_write (or insert_many) of several operations (documents)
             applies only its first one, then Crash (an unordered bulk cut short:
             any subset may land)
    last     a bulk_write (insert_many) applies only its last one, then Crash
    stall    call ``action()`` and then send the write as if nothing happened
             (a request paused there while something else ran)

``Crash`` is a BaseException, so no ``except Exception`` in the code under test
(the sweep's per-order guard, say) can swallow it: like a dead process, nothing
after the crash point runs.
"""
import contextlib
import types

WRITES = frozenset({
    "insert_one", "insert_many", "update_one", "update_many", "find_one_and_update",
    "find_one_and_delete", "find_one_and_replace", "delete_one", "delete_many",
    "replace_one", "bulk_write",
})
MODES = ("before", "after", "first", "last")


class Crash(BaseException):
    """The simulated death of the process at a write."""


class FaultyDB:
    def __init__(self, db, at=None, when="before", action=None):
        self._db = db
        self._at = at
        self._when = when
        self._action = action
        self._collections = {}
        self.writes = []  # (n, collection, method, number of bulk operations or None)
        self.pushed = {}  # n -> the marker a bulk write's operations push, if any
        self.fired = False

    def __getitem__(self, name):
        coll = self._collections.get(name)
        if coll is None:
            coll = self._collections[name] = _FaultyCollection(self, self._db[name])
        return coll

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def list_collection_names(self):
        return self._db.list_collection_names()

    def _write(self, coll, method, call, args, kwargs):
        n = len(self.writes) + 1
        ops = None
        bulk_arg = {"bulk_write": "requests", "insert_many": "documents"}.get(method)
        if bulk_arg is not None:
            ops = list(kwargs.get(bulk_arg, args[0] if args else []))
        self.writes.append((n, coll, method, None if ops is None else len(ops)))
        for op in ops or ():
            doc = getattr(op, "_doc", None)  # pymongo's UpdateOne keeps its update here
            if isinstance(doc, dict) and isinstance(doc.get("$push"), dict):
                self.pushed[n] = doc["$push"].get("ops")
        if n != self._at:
            return call(*args, **kwargs)
        self.fired = True
        when = self._when
        if when == "before":
            raise Crash(f"before write {n} ({coll}.{method})")
        if when == "stall":
            self._action()
            return call(*args, **kwargs)
        if when in ("first", "last"):
            if ops is None or len(ops) < 2:
                raise ValueError(f"write {n} ({coll}.{method}) is not a bulk of several operations")
            part = ops[:1] if when == "first" else ops[-1:]
            rest = {k: v for k, v in kwargs.items() if k != bulk_arg}
            call(part, *args[1:], **rest)
            raise Crash(f"after part of write {n} ({coll}.{method})")
        if when == "after":
            call(*args, **kwargs)
            raise Crash(f"after write {n} ({coll}.{method})")
        raise ValueError(f"unknown crash mode {when!r}")


class _FaultyCollection:
    def __init__(self, owner, collection):
        self._owner = owner
        self._collection = collection
        self.name = collection.name

    def __getattr__(self, name):
        attr = getattr(self._collection, name)
        if name not in WRITES:
            return attr

        def write(*args, **kwargs):
            return self._owner._write(self.name, name, attr, args, kwargs)

        return write


@contextlib.contextmanager
def faulty(ctx, at=None, when="before", action=None):
    """Run the block with ``ctx.db`` wrapped; yields the FaultyDB (its ``writes``
    list records every write the block made)."""
    real = ctx.db
    wrapper = FaultyDB(real, at, when, action)
    ctx.db = wrapper
    try:
        yield wrapper
    finally:
        ctx.db = real


def crash_at(ctx, fn, at, when="before", action=None):
    """Call ``fn()`` with a crash planted at write ``at``. Returns ("crashed", message),
    ("ok", result) or ("error", the exception) if it failed before reaching ``at``."""
    with faulty(ctx, at, when, action) as db:
        try:
            result = fn()
        except Crash as exc:
            return "crashed", str(exc)
        except Exception as exc:  # a business error before or instead of the crash point
            if db.fired and when != "stall":
                raise
            return "error", exc
    return "ok", result


def count_writes(ctx, fn):
    """Run ``fn()`` and return the list of writes it made [(n, coll, method, bulk size)]."""
    with faulty(ctx) as db:
        fn()
    return list(db.writes)


def pushed_markers(ctx, fn):
    """Run ``fn()`` and return {write number: marker pushed} for its bulk writes that
    push an effect marker (``<order>:<effect>``): where effects are applied."""
    with faulty(ctx) as db:
        fn()
    return dict(db.pushed)


def crash_points(writes):
    """Every (k, mode) for a list of writes: before and after each write, and the
    two partial outcomes of each bulk_write of several operations."""
    points = []
    for n, _, method, size in writes:
        points.append((n, "before"))
        points.append((n, "after"))
        if method == "bulk_write" and size and size > 1:
            points.append((n, "first"))
            points.append((n, "last"))
    return points


def sibling(ctx, db=None):
    """Another process's view of the same backend: same clock, settings and hasher,
    its own database handle (the real one unless given)."""
    return types.SimpleNamespace(db=db if db is not None else ctx.db, clock=ctx.clock,
                                 settings=ctx.settings, passwords=ctx.passwords,
                                 engine=getattr(ctx, "engine", None))


# What a refused request may still write: a wrong password's failure counter
# (be.model.throttle) is the one change a refusal makes, by design.
REFUSALS_WRITE = ("throttle",)


def snapshot(db, names=None):
    """Every document of every collection (or of ``names``), for before/after
    equality; failure counters (REFUSALS_WRITE) are left out unless named."""
    names = names or sorted(n for n in db.list_collection_names() if n not in REFUSALS_WRITE)
    return {name: sorted((dict(d) for d in db[name].find({})), key=lambda d: repr(d["_id"]))
            for name in names}
