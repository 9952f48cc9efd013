"""Fast paths for reads: which documents a filter selects, and what a read copies.

mongomock answers every query with its Python-level matcher over every document,
copies every match before applying skip and limit, sorts through a Python BSON
comparison and expires TTL documents on every read. The functions here stand in
for its internals (``patches`` installs them; ``.original`` on each is mongomock's
own) and answer exactly as its code does:

* ``_iter_documents``: a filter naming a single ``_id`` (or an ``$in`` list of
  them) looks those documents up directly, as the real ``_id`` index does; one
  that an index map serves reads only its candidates (be.embedded.indexmaps);
  other scans skip the documents that plainly fail a cheap check (_prefilter);
* ``_quick_match`` answers the filter clauses the models use as mongomock's
  matcher does and leaves everything else to it;
* a cursor with a limit copies only the documents it returns, ``find_one`` reads
  with a limit of one (as pymongo does), plain projections are copied directly
  and sorts on plain values compare natively;
* TTL expiry runs at most once a second per collection.

``FAST_PATHS = False`` turns off ``_quick_match``, the plain projections and the
updates by _id (be.embedded.fastwrites): the tests run both ways and compare
(be/tests/test_embedded_fast.py).
"""
import datetime
import itertools
import operator
import re
import time
from collections.abc import Mapping

import bson
import mongomock
from mongomock import collection as _mm_collection
from mongomock.filtering import NOTHING

from be.embedded import ordered
from be.embedded.indexmaps import _RANGE, _index_plan

FAST_PATHS = True


def _plain_key(value):
    return not isinstance(value, (dict, list, tuple, re.Pattern)) and value is not None


_COMPARABLE = (str, int, float, datetime.datetime)


def _prefilter(filter):
    """Cheap necessary conditions for a filter: for each top-level ``field: "text"``
    or ``field: {"$in": [texts]}`` the field holds one of them (or an array,
    left to the full match), and for each range on a field (dotted or not) with a
    plain operand the field's first segment is present. A document failing one
    cannot match; one passing all still gets the full match."""
    checks = []
    for key, value in filter.items():
        if key.startswith("$"):
            continue
        first = key.split(".", 1)[0]
        if type(value) is str and first == key:
            checks.insert(0, lambda d, k=key, v=value: (x := d.get(k)) == v or type(x) is list)
        elif type(value) is dict and value:
            ops = set(value)
            if ops == {"$in"} and first == key and isinstance(value["$in"], (list, tuple)) \
                    and all(type(v) is str for v in value["$in"]):
                wanted = frozenset(value["$in"])
                checks.insert(0, lambda d, k=key, w=wanted: (
                    type(x := d.get(k)) is list or (type(x) is str and x in w)))
            elif ops <= _RANGE and all(type(v) in _COMPARABLE or isinstance(v, _COMPARABLE)
                                       for v in value.values()):
                checks.append(lambda d, f=first: d.get(f) is not None)
    return checks


# Sort values whose comparison in mongomock (BsonComparable -> bson_compare) is
# plain Python comparison: values of one of these groups compare as Python does.
_NATIVE_SORT = (frozenset({str}), frozenset({datetime.datetime}),
                frozenset({int, float, bson.Int64}))


def _sorted_by(docs, field, descending):
    """``docs`` sorted on one key exactly as mongomock sorts them (stable, its
    BSON order), comparing plain values directly when every document holds one
    of the same kind: most sorts on an indexed list (dates, ids), which
    mongomock compares through a Python-level BSON comparison."""
    resolve = _mm_collection.filtering.resolve_key
    values = [resolve(field, d) for d in docs]
    kinds = {type(v) for v in values}
    if any(kinds <= group for group in _NATIVE_SORT):
        order = sorted(range(len(docs)), key=values.__getitem__, reverse=descending)
        return [docs[i] for i in order]
    sort_key = _mm_collection.filtering.resolve_sort_key
    return sorted(docs, key=lambda d: sort_key(field, d), reverse=descending)


_COMPARE = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}
_EQ_SEARCH = frozenset({str, int, type(None), datetime.datetime})


def _quick_match(filter, doc):
    """filter_applies(filter, doc) for the clause shapes the models use, or None
    when some clause is not one of them (the caller then asks mongomock). Shapes:
    ``field`` or ``field.sub`` (through a sub-document, not an array) pinned to a
    str/int/None/datetime, or ``{"$gt"|"$gte"|"$lt"|"$lte": int|datetime}`` over a
    value of the same type, or ``{"$ne": str|int}``. Each follows mongomock's
    _Filterer.apply step for step: an array value matches an equality by holding
    it, None matches a missing field, $ne needs no element equal to it."""
    if not FAST_PATHS:
        return None
    for key, search in filter.items():
        if not key or key[0] == "$":
            return None
        if "." in key:
            head, _, rest = key.partition(".")
            if not head or not rest or "." in rest:
                return None
            sub = doc.get(head, {})
            if type(sub) is dict:
                candidates = (sub.get(rest, NOTHING),)
            elif sub is None or isinstance(sub, (str, int, float, datetime.datetime)):
                candidates = ()
            else:
                return None
        else:
            candidates = (doc.get(key, NOTHING),)
        kind = type(search)
        if kind in _EQ_SEARCH:
            for value in candidates:
                if isinstance(value, (list, tuple)):
                    if search in value or search == value:
                        break
                elif value == search or (search is None and value is NOTHING):
                    break
            else:
                return False
            continue
        if kind is not dict or len(search) != 1:
            return None
        (op, arg), = search.items()
        compare = _COMPARE.get(op)
        if compare is not None and type(arg) in (int, datetime.datetime):
            for value in candidates:
                if value is NOTHING:
                    continue
                if type(value) is not type(arg):
                    return None  # arrays, other types: BSON brackets, mongomock's code
                if compare(value, arg):
                    break
            else:
                return False
        elif op == "$ne" and type(arg) in (str, int):
            for value in candidates:
                if isinstance(value, (list, tuple)):
                    if any(item == arg for item in value):
                        return False
                elif value == arg:
                    return False
        else:
            return None
    return True


def _applies(filter, doc):
    matched = _quick_match(filter, doc)
    return _mm_collection.filter_applies(filter, doc) if matched is None else matched


def _plain_projection(fields):
    """True (include) or False (exclude) for a projection dict naming top-level
    fields with 0/1 (and maybe _id), else None."""
    if not FAST_PATHS or type(fields) is not dict:
        return None
    values = set()
    for key, value in fields.items():
        if type(value) not in (int, bool) or type(key) is not str or "." in key or "$" in key:
            return None
        if key != "_id":
            values.add(value)
    if len(values) != 1:  # none, or mixed (mongomock refuses any two different values)
        return None
    return bool(values.pop())


def _iter_documents(self, filter):
    key = filter.get("_id") if isinstance(filter, dict) else None
    if key is not None and not isinstance(key, (dict, list)):
        store = self._store
        store._remove_expired_documents()
        doc = store._documents.get(key)
        if doc is None:
            return iter(())
        if len(filter) == 1 or _applies(filter, doc):
            return iter([doc])
        return iter(())
    keys = key.get("$in") if isinstance(key, dict) and len(key) == 1 else None
    if isinstance(keys, (list, tuple)) and all(_plain_key(k) for k in keys):
        # {_id: {$in: [...]}}: one lookup per id, as the _id index does
        store = self._store
        store._remove_expired_documents()
        docs = (store._documents.get(k) for k in dict.fromkeys(keys))
        only_id = len(filter) == 1
        return iter([d for d in docs if d is not None
                     and (only_id or _applies(filter, d))])
    if isinstance(filter, dict) and filter:
        store = self._store
        store._remove_expired_documents()
        plan = _index_plan(store, filter) if store._documents else None
        if plan is not None:
            docs, residual = plan
            if not residual:
                return iter(docs)
            applies = _applies
            # lazy, as mongomock's own scan: update_one stops at the first match
            return (d for d in docs if applies(residual, d))
    checks = _prefilter(filter) if isinstance(filter, dict) else None
    if checks:
        # a scan still, but documents that plainly fail a string equality or
        # a range are skipped before mongomock's (slow) full match
        store = self._store
        if store.is_empty:
            return _iter_documents.original(self, filter)
        applies = _applies
        keep = checks[0]
        for more in checks[1:]:
            keep = (lambda a, b: lambda d: a(d) and b(d))(keep, more)
        return iter([d for d in list(store._documents.values())
                     if keep(d) and applies(filter, d)])
    return _iter_documents.original(self, filter)


def _remove_expired_documents(self):
    now = time.monotonic()
    if now - getattr(self, "_last_expiry", 0.0) < 1.0:
        return
    self._last_expiry = now
    _remove_expired_documents.original(self)


def _copy_only_fields(self, doc, fields, container):
    # mongomock's, for a projection that includes or excludes top-level fields
    include = _plain_projection(fields) if container is dict else None
    if include is None:
        return _copy_only_fields.original(self, doc, fields, container)
    return _plain_copier(fields, include)(doc)


def _ids_only(fields):
    """True for the projection ``{"_id": 1}`` (search reads candidates' ids so)."""
    return (FAST_PATHS and type(fields) is dict and len(fields) == 1
            and type(fields.get("_id")) in (int, bool) and fields["_id"] == 1)


def _plain_copier(fields, include):
    """A function copying a document through the plain projection ``fields``
    (``include``: _plain_projection's verdict) as _copy_only_fields does, worked
    out once per read instead of once per document (a search reads 500
    candidates). Like mongomock, each copy leaves ``_id`` last in ``fields``."""
    copy_field = _mm_collection._copy_field
    id_value = fields.get("_id", 1)
    named = frozenset(k for k in fields if k != "_id")
    keep_id = id_value != 0

    def copy(doc):
        if include:  # _id after the fields, as mongomock adds it
            projected = {k: copy_field(v, dict) for k, v in doc.items()
                         if k in named and k != "_id"}
        else:  # _id where the document has it
            projected = {k: copy_field(v, dict) for k, v in doc.items() if k not in named}
        if not keep_id:
            projected.pop("_id", None)
        elif "_id" in doc:
            projected["_id"] = doc["_id"]
        fields.pop("_id", None)
        fields["_id"] = id_value  # mongomock leaves _id in the caller's projection too
        return projected
    return copy


# mongomock's cursor copies every match before applying skip and limit: a page
# of a long order list copied the whole list. With a limit, copy only the
# window (all of it at the first read, as mongomock computes its results).
def _compute_results(self, with_limit_and_skip=False):
    if not (with_limit_and_skip and self._limit):
        return _compute_results.original(self, with_limit_and_skip)
    key = (self._factory, self._skip, self._limit)
    cached = self.__dict__.get("_window")
    if cached is None or cached[0] != key:
        rows = itertools.islice(self._factory(), self._skip, self._skip + abs(self._limit))
        if self.collection.codec_options.tz_aware:
            rows = (mongomock.helpers.make_datetime_timezone_aware_in_document(x)
                    for x in rows)
        cached = self._window = (key, list(rows))
    return cached[1]


def _get_dataset(self, spec, sort, fields, as_class):
    # mongomock's, with _sorted_by for each sort key (last key first, stable),
    # or walked in order from an ordered index (be.embedded.ordered)
    walked = ordered.walk(self, spec, sort, _applies) if FAST_PATHS and sort else None
    dataset = self._iter_documents(spec) if walked is None else walked
    if sort and walked is None:
        if isinstance(sort, dict):
            sort = sort.items()
        for sort_key, sort_direction in reversed(list(sort)):
            if sort_key == "$natural":
                if sort_direction < 0:
                    dataset = iter(reversed(list(dataset)))
                continue
            if sort_key.startswith("$"):
                raise NotImplementedError(
                    f"Sorting by {sort_key} is not implemented in mongomock yet")
            dataset = iter(_sorted_by(list(dataset), sort_key, sort_direction < 0))
    if as_class is dict and type(self)._copy_only_fields is _copy_only_fields:
        # the projection worked out once for the whole read
        if _ids_only(fields):  # {"_id": 1}: mongomock copies the _id alone
            for document in dataset:
                yield {"_id": document["_id"]} if "_id" in document else {}
            return
        include = _plain_projection(fields)
        if include is not None:
            copy = _plain_copier(fields, include)
            for document in dataset:
                yield copy(document)
            return
    for document in dataset:
        yield self._copy_only_fields(document, fields, as_class)


def count_documents(self, filter, **kwargs):
    # an equality on a prefix of an index's keys: bisected from its ordered index
    found = ordered.count(self, filter, kwargs) if FAST_PATHS else None
    if found is None:
        return count_documents.original(self, filter, **kwargs)
    return found


def find_one(self, filter=None, *args, **kwargs):
    # as pymongo's find_one: a cursor limited to one document (mongomock's
    # copied every match to return the first)
    if filter is None:
        filter = {}
    if not isinstance(filter, Mapping):
        filter = {"_id": filter}
    for doc in self.find(filter, *args, **kwargs).limit(-1):
        return doc
    return None
