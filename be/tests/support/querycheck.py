"""Does a declared index serve a query? A model of MongoDB's query planner.

``check(collection, filter, sort, method)`` answers for one query,
``Recorder`` (an embedded-engine observer) collects the shapes that code issues,
and the tests assert that every shape the application issues is served by an
index in ``be.db.INDEXES`` on a real MongoDB (the embedded engine has no
indexes to ask: it scans).

A query is *served* by an index when the planner can answer it with a bounded
index scan and no blocking in-memory sort:

* the index's leading key is bounded by a predicate (equality, ``$in``,
  ``$all``, a range, an anchored regex, ``$exists: true``);
* walking the index keys: first the keys bound by equality or ``$in`` (in any
  order among themselves), then the sort's keys in the sort's order, all in the
  index's direction or all reversed (sort keys the filter pins to one value are
  dropped from the sort first; keys pinned to one value may sit between sort
  keys), then anything (range predicates there still bound the scan);
* a ``$in`` before the sort keys makes MongoDB merge one sorted scan per value
  (SORT_MERGE, up to 200 values): served, noted as a caveat;
* a sparse index is used only when the query cannot match documents missing
  its keys (an equality to a non-null value, a range, ``$exists: true``...;
  not ``null``, ``$ne``, ``$nin`` or ``$exists: false``);
* a unique index whose keys are all pinned (``_id`` equality, always declared)
  returns at most one document, or at most one per ``$in`` value: any sort is
  trivial there;
* predicates on fields the chosen index does not bound are *residual*: applied
  to the fetched documents, allowed, and reported;
* ``$or``: every clause (with the predicates outside it) must be served;
  ``$text`` needs a text index; a multikey field (an array) behaves like any
  other for bounds.

The filter's values do not matter, only its shape: field -> kinds of predicate.
"""
import os
import sys
import threading
from collections import namedtuple

# the repository: this file is be/tests/support/querycheck.py
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))

# kinds of predicate a filter puts on a field
POINT = {"eq", "null"}                       # one value
EQUALITY = POINT | {"in", "in+null", "all"}  # bound like equality (a set of points)
BOUNDING = EQUALITY | {"range", "regex^", "exists"}
MISSING_SAFE = {"eq", "in", "all", "range", "regex^", "exists", "elemMatch", "size"}

_RANGE_OPS = {"$gt", "$gte", "$lt", "$lte"}
_ID_INDEX = ([("_id", 1)], {"unique": True})

# Code that reads whole collections on purpose; its queries are not checked.
EXEMPT = {
    "be/audit.py": "offline audit: reads every document of each collection by design",
    "scripts/migrate_catalogue.py": "offline migration: reads every listing once by design",
}

Shape = namedtuple("Shape", "collection method filter sort")
Shape.__doc__ = """A query's shape: filter is a tuple of (field, kinds) pairs, sorted,
with ("$or", (branch filters...)) for a disjunction; sort a tuple of (field, 1|-1)."""

Verdict = namedtuple("Verdict", "covered index reason residual notes")


# ---------------------------------------------------------------- shapes

def _value_kind(value):
    if value is None:
        return "null"
    if isinstance(value, dict) and value and all(isinstance(k, str) and k.startswith("$")
                                                 for k in value):
        return None  # an operator document: see _operator_kinds
    return "eq"


def _operator_kinds(ops):
    kinds = set()
    for op, arg in ops.items():
        if op == "$eq":
            kinds.add("null" if arg is None else "eq")
        elif op in _RANGE_OPS:
            kinds.add("range")
        elif op == "$in":
            kinds.add("in+null" if any(v is None for v in arg) else "in")
        elif op == "$nin":
            kinds.add("nin")
        elif op == "$ne":
            kinds.add("ne")
        elif op == "$exists":
            kinds.add("exists" if arg else "notexists")
        elif op == "$all":
            kinds.add("all")
        elif op == "$elemMatch":
            kinds.add("elemMatch")
        elif op == "$regex":
            pattern = getattr(arg, "pattern", arg)
            anchored = isinstance(pattern, str) and pattern.startswith("^") and "|" not in pattern
            kinds.add("regex^" if anchored and "$options" not in ops else "regex")
        elif op == "$options":
            continue
        elif op == "$size":
            kinds.add("size")
        else:  # $not, $type, $mod, $bitsAll...
            kinds.add("other")
    return kinds


def _conjuncts(flt, fields, ors):
    """Collect field -> kinds (and $or branch lists) from one filter document."""
    for key, value in (flt or {}).items():
        if key == "$and":
            for part in value:
                _conjuncts(part, fields, ors)
        elif key == "$or":
            ors.append(tuple(filter_shape(part) for part in value))
        elif key == "$text":
            fields.setdefault("$text", set()).add("text")
        elif key.startswith("$"):  # $nor, $expr, $where, $comment...
            fields.setdefault(key, set()).add("other")
        else:
            kind = _value_kind(value)
            kinds = {kind} if kind else _operator_kinds(value)
            if getattr(value, "pattern", None) is not None and not isinstance(value, dict):
                pattern = value.pattern
                kinds = {"regex^" if isinstance(pattern, str) and pattern.startswith("^")
                         else "regex"}
            fields.setdefault(key, set()).update(kinds)


def filter_shape(flt):
    """The hashable shape of a filter document."""
    fields, ors = {}, []
    _conjuncts(flt, fields, ors)
    shape = [(f, tuple(sorted(k))) for f, k in sorted(fields.items())]
    shape += [("$or", branches) for branches in ors]
    return tuple(shape)


def sort_shape(sort):
    if not sort:
        return ()
    if isinstance(sort, str):
        return ((sort, 1),)
    items = sort.items() if isinstance(sort, dict) else sort
    out = []
    for item in items:
        field, direction = (item, 1) if isinstance(item, str) else item
        out.append((field, 1 if direction in (1, "asc", "ascending") else -1
                    if direction in (-1, "desc", "descending") else direction))
    return tuple(out)


def _arg(args, kwargs, name, position):
    if name in kwargs:
        return kwargs[name]
    return args[position] if len(args) > position else None


def _bulk_shapes(collection, requests):
    out = []
    for op in requests:
        flt = getattr(op, "_filter", None)
        if flt is None:  # InsertOne
            continue
        method = type(op).__name__
        out.append(Shape(collection, method, filter_shape(flt),
                         sort_shape(getattr(op, "_sort", None))))
    return out


def shapes_of_call(collection, method, args, kwargs):
    """The query shapes one pymongo collection call issues ([] for calls that
    read no filter: inserts, index management, change streams...)."""
    if method == "bulk_write":
        return _bulk_shapes(collection, _arg(args, kwargs, "requests", 0) or [])
    if method in ("find", "find_one"):
        flt = _arg(args, kwargs, "filter", 0)
        if flt is not None and not isinstance(flt, dict):
            flt = {"_id": flt}
        return [Shape(collection, method, filter_shape(flt), sort_shape(kwargs.get("sort")))]
    if method == "count_documents":
        return [Shape(collection, method, filter_shape(_arg(args, kwargs, "filter", 0)), ())]
    if method in ("update_one", "update_many", "replace_one", "delete_one", "delete_many"):
        return [Shape(collection, method, filter_shape(_arg(args, kwargs, "filter", 0)),
                      sort_shape(kwargs.get("sort")))]
    if method in ("find_one_and_update", "find_one_and_replace"):
        return [Shape(collection, method, filter_shape(_arg(args, kwargs, "filter", 0)),
                      sort_shape(_arg(args, kwargs, "sort", 3)))]
    if method == "find_one_and_delete":
        return [Shape(collection, method, filter_shape(_arg(args, kwargs, "filter", 0)),
                      sort_shape(_arg(args, kwargs, "sort", 2)))]
    if method == "distinct":
        return [Shape(collection, method, filter_shape(_arg(args, kwargs, "filter", 1)), ())]
    if method == "aggregate":
        pipeline = list(_arg(args, kwargs, "pipeline", 0) or [])
        flt, sort = {}, None
        if pipeline and "$match" in pipeline[0]:
            flt = pipeline[0]["$match"]
            if len(pipeline) > 1 and "$sort" in pipeline[1]:
                sort = pipeline[1]["$sort"]
        elif pipeline and "$sort" in pipeline[0]:
            sort = pipeline[0]["$sort"]
        return [Shape(collection, method, filter_shape(flt), sort_shape(sort))]
    return []


# ---------------------------------------------------------------- planner

def _usable(kinds, sparse, wanted):
    kinds = set(kinds or ())
    if sparse:
        kinds.discard("null")
    return bool(kinds & wanted)


def _try_index(keys, options, fields, sort):
    """(served, bound fields, notes, reason) for one index and a conjunctive shape."""
    names = [k for k, _ in keys]
    directions = [d for _, d in keys]
    sparse = bool(options.get("sparse"))
    if options.get("partialFilterExpression") is not None:
        return False, set(), [], "partial index: not modelled"
    if any(d == "text" for d in directions):
        if "$text" in fields:
            return True, {"$text"}, [], ""
        return False, set(), [], "text index serves $text queries only"
    if "$text" in fields:
        return False, set(), [], "$text needs a text index"
    hashed = any(d == "hashed" for d in directions)
    if any(d not in (1, -1, "hashed") for d in directions):
        return False, set(), [], f"{directions} index not modelled"
    if not _usable(fields.get(names[0]), sparse, BOUNDING if not hashed else EQUALITY):
        return False, set(), [], f"leading key {names[0]!r} is not bounded by the filter"
    if sparse and not any(set(fields.get(n, ())) & MISSING_SAFE for n in names):
        return False, set(), [], "sparse index, but the query can match documents without its keys"

    notes = []
    bound = set()
    pos = 0
    multi_point = False
    while pos < len(names) and _usable(fields.get(names[pos]), sparse, EQUALITY):
        bound.add(names[pos])
        if not set(fields[names[pos]]) & POINT:
            multi_point = True
        pos += 1

    pinned = {f for f, kinds in fields.items() if set(kinds) & POINT}
    if options.get("unique") and all(n in bound for n in names):
        if sort and multi_point:
            notes.append("unique keys bound by $in: sorts at most one document per value")
        return True, bound, notes, ""

    wanted = [(f, d) for f, d in sort if f not in pinned]
    if wanted:
        if hashed:
            return False, bound, notes, "a hashed index cannot provide a sort"
        flip = None
        for field, direction in wanted:
            while pos < len(names) and names[pos] != field and names[pos] in pinned:
                bound.add(names[pos])
                pos += 1
            if pos >= len(names) or names[pos] != field:
                return False, bound, notes, (
                    f"sort {list(sort)} not provided: after the equality keys the index has "
                    f"{names[pos:]}, a blocking in-memory sort would be needed")
            same = direction == directions[pos]
            if flip is None:
                flip = not same
            elif flip == same:
                return False, bound, notes, f"sort {list(sort)} mixes directions unlike the index"
            if _usable(fields.get(field), sparse, BOUNDING):
                bound.add(field)  # a range on a sort key bounds the scan too
            pos += 1
        if multi_point:
            notes.append("$in before the sort keys: MongoDB merges one sorted scan per "
                         "value (SORT_MERGE, up to 200 values)")
    for name in names[pos:]:
        if _usable(fields.get(name), sparse, BOUNDING):
            bound.add(name)
    return True, bound, notes, ""


def _check_conjunction(fields, sort, specs):
    best, reasons = None, []
    for keys, options in specs:
        served, bound, notes, reason = _try_index(keys, options, fields, sort)
        label = tuple((k, d) for k, d in keys)
        if not served:
            reasons.append(f"{list(label)}: {reason}")
            continue
        residual = sorted(f for f in fields if f not in bound)
        # a unique index pinned to one document beats any other; then fewest residuals
        point = bool(options.get("unique")) and all(set(fields.get(k, ())) & POINT
                                                    for k, _ in keys)
        rank = (not point, len(residual))
        if best is None or rank < best[0]:
            best = (rank, Verdict(True, label, "", residual, notes))
    if best is not None:
        return best[1]
    return Verdict(False, None, "; ".join(reasons) or "no index declared", [], [])


def check_shape(shape, indexes=None):
    """Verdict for a Shape against ``indexes`` (default ``be.db.INDEXES``)."""
    if indexes is None:
        from be.db import INDEXES as indexes
    specs = [_ID_INDEX] + list(indexes.get(shape.collection, []))
    fields = {f: k for f, k in shape.filter if f != "$or"}
    ors = [branches for f, branches in shape.filter if f == "$or"]
    sort = () if shape.method == "count_documents" else shape.sort
    if not ors:
        return _check_conjunction(fields, sort, specs)
    # the conjunction alone may already be served; else every $or branch must be
    plain = _check_conjunction(fields, sort, specs)
    if plain.covered:
        return plain
    for branches in ors:
        for branch in branches:
            merged = dict(fields)
            for f, k in branch:
                if f != "$or":
                    merged[f] = tuple(sorted(set(merged.get(f, ())) | set(k)))
            # each branch must also provide the sort: MongoDB then merges them in order
            verdict = _check_conjunction(merged, sort, specs)
            if not verdict.covered:
                return Verdict(False, None, f"$or branch {branch}: {verdict.reason}", [], [])
    return Verdict(True, ("$or",), "", [], ["each $or branch is served" + (
        ", in sort order (SORT_MERGE)" if sort else "")])


def check(collection, filter=None, sort=None, method="find", indexes=None):
    """Is ``method`` on ``collection`` with this filter and sort served by an index?"""
    shape = Shape(collection, method, filter_shape(filter), sort_shape(sort))
    return check_shape(shape, indexes)


# ---------------------------------------------------------------- recording

# Layers between a caller and the database that pass calls through: the caller
# is the first frame outside them.
WRAPPERS = ("be/embedded/engine.py", "be/tests/support/querycheck.py", "be/tests/support/faults.py")
_WRAPPER_FILES = tuple(os.path.join(*w.split("/")) for w in WRAPPERS)


_PATHS = {}  # code file name -> path relative to the repository


def _call_site():
    frame = sys._getframe(2)
    wrappers = _WRAPPER_FILES
    while frame is not None and frame.f_code.co_filename.endswith(wrappers):
        frame = frame.f_back
    if frame is None:
        return None, None
    name = frame.f_code.co_filename
    path = _PATHS.get(name)
    if path is None:
        path = _PATHS[name] = os.path.relpath(os.path.abspath(name), ROOT).replace(os.sep, "/")
    return path, (frame.f_lineno, frame.f_code.co_name)


def is_application(path):
    """Application code: be/ and scripts/, minus tests and EXEMPT."""
    if path is None or path in EXEMPT:
        return False
    if not path.startswith(("be/", "scripts/")):
        return False
    return "/tests/" not in path and not os.path.basename(path).startswith(("test_", "conftest"))


_APP = {}


def _is_app(path):
    known = _APP.get(path)
    if known is None:
        known = _APP[path] = is_application(path)
    return known


class Recorder:
    """An embedded-engine observer that keeps every query shape application code
    issues, with the places that issue it."""

    def __init__(self, everything=False):
        self.everything = everything  # record test code's own queries too
        self.shapes = {}
        self._lock = threading.Lock()  # server threads record while a test reads

    def __call__(self, collection, method, args, kwargs):
        path, where = _call_site()
        if not self.everything and not _is_app(path):
            return
        shapes = shapes_of_call(collection, method, args, kwargs)
        if not shapes:
            return
        site = f"{path}:{where[0]} {where[1]}" if where else None
        with self._lock:
            for shape in shapes:
                self.shapes.setdefault(shape, set()).add(site)

    def snapshot(self):
        with self._lock:
            return {shape: set(sites) for shape, sites in self.shapes.items()}

    def uncovered(self, indexes=None):
        """[(shape, verdict, sites)] for every recorded shape no index serves."""
        out = []
        for shape, sites in sorted(self.snapshot().items(), key=repr):
            verdict = check_shape(shape, indexes)
            if not verdict.covered:
                out.append((shape, verdict, sorted(sites)))
        return out

    def report(self, indexes=None):
        lines = []
        for shape, sites in sorted(self.snapshot().items(), key=repr):
            v = check_shape(shape, indexes)
            how = f"index {list(v.index)}" if v.covered else f"NOT SERVED: {v.reason}"
            extra = (f"; residual {v.residual}" if v.residual else "") + "".join(
                f"; {n}" for n in v.notes)
            lines.append(f"{shape.collection}.{shape.method} filter={dict(shape.filter)} "
                         f"sort={list(shape.sort)} -> {how}{extra}  [{', '.join(sorted(sites))}]")
        return "\n".join(lines)
