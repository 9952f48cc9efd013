"""Fast paths for writes by _id: snapshot and compare only the fields written.

mongomock's _update deep-copies the whole stored document before applying an
update and compares the whole of it afterwards (an order with its lines and
history, for a change of one field), converts every datetime of the filter and
the update through a slow generic walk, and asks the client for its version;
its find_one_and_update reads the document, updates it, then reads it again.
For the updates the models issue (a filter naming one plain ``_id``, operators
that write named fields, no upsert) ``update_by_id`` runs the very same updater
(_apply_update_document) and unique check, but snapshots and compares only the
top-level fields the update writes: the only ones it can change. Anything else
(upserts, update_many, pipelines, replacements, $rename, positional paths,
writes to _id) goes to mongomock's own code (``.original`` on each replacement,
kept by ``patches``). Before these shortcuts new_order took 1.2 ms and payment
0.4 ms; with them 0.59 ms and 0.21 ms (doc/scaling.md, 1,000 orders).
``fastpaths.FAST_PATHS = False`` turns them off: the tests run both ways and
compare (be/tests/test_embedded_fast.py).

``bulk_write`` also accepts the operations of current pymongo releases, which
pass a ``sort`` that mongomock's bulk builder does not know.
"""
from mongomock import collection as _mm_collection
from mongomock import DuplicateKeyError
from pymongo import ReturnDocument

from be.embedded import fastpaths
from be.embedded.copies import _deepcopy, _patch_dates
from be.embedded.indexmaps import _apply_update_document, _store_key, _tracked

# operators that change only the paths they name (not $rename: it writes its target
# too; not $setOnInsert/$currentDate: left to mongomock)
_FIELD_OPERATORS = frozenset({"$set", "$unset", "$inc", "$push", "$pull", "$addToSet",
                              "$pop", "$min", "$max", "$mul", "$pullAll"})


_PLAIN = frozenset({str, int, bool, type(None)})


def _patch_filter(spec):
    """_patch_dates for a filter that is only read: the filter itself when nothing
    in it would change (top-level values, and operator documents, of plain types)."""
    for value in spec.values():
        kind = type(value)
        if kind in _PLAIN or (kind is dict and all(type(v) in _PLAIN for v in value.values())):
            continue
        return _patch_dates(spec)
    return spec


def _written_fields(update):
    """The top-level fields an operator update writes, or None when the fast path
    does not take it."""
    if type(update) is not dict or not update:
        return None
    heads = set()
    for op, paths in update.items():
        if op not in _FIELD_OPERATORS or type(paths) is not dict or not paths:
            return None
        for path in paths:
            if type(path) is not str or not path or "$" in path:
                return None
            head = path.split(".", 1)[0]
            if head == "_id" or not head:
                return None
            heads.add(head)
    return heads


def _by_id(spec):
    key = spec.get("_id") if type(spec) is dict else None
    return key is not None and not isinstance(key, (dict, list))


def _fast_update_fields(spec, update):
    """The fields the fast path would snapshot for this update, or None."""
    if not fastpaths.FAST_PATHS or not _by_id(spec):
        return None
    return _written_fields(update)


class _UpdateOnes:
    """Stands in for mongomock's BulkOperationBuilder while pymongo's requests add
    themselves: collects (filter, update, fields written) of single-document
    updates by _id that the fast path takes, and notes any other request."""

    def __init__(self):
        self.ops, self.simple = [], True

    def add_update(self, selector, document, multi=False, upsert=False, collation=None,
                   array_filters=None, hint=None, sort=None):
        written = None if multi or upsert or collation or array_filters or hint or sort \
            else _fast_update_fields(selector, document)
        if written is None:
            self.simple = False
        else:
            self.ops.append((selector, document, written))

    def __getattr__(self, name):  # add_insert, add_replace, add_delete...
        self.simple = False
        return lambda *args, **kwargs: None


def _update_result(coll, matched, modified):
    return {"connectionId": coll.database.client._id, "err": None, "n": matched,
            "nModified": modified, "ok": 1, "upserted": None, "updatedExisting": bool(matched)}


def update_by_id(self, spec, document, written):
    # as mongomock's _update for one document, snapshotting only ``written``
    spec, document = _patch_filter(spec), _patch_dates(document)  # a fresh update
    doc = next(iter(self._iter_documents(spec)), None)
    if doc is None:
        return _update_result(self, 0, 0)
    before = {field: _deepcopy(doc[field]) for field in written if field in doc}
    order = list(doc)
    _tracked(self, doc, document,
             lambda: _apply_update_document.original(self, doc, spec, document, False))
    # mongomock compares whole documents (==, which takes an object as equal to
    # itself); only the written fields can differ
    if {field: doc[field] for field in written if field in doc} == before:
        return _update_result(self, 1, 0)
    try:
        self._ensure_uniques(doc)
    except DuplicateKeyError:
        # mongomock stores its snapshot back: the document as it was, in its order
        key = _store_key(doc["_id"])
        self._store[key] = type(doc)((k, before[k] if k in written else doc[k])
                                     for k in order)
        raise
    return _update_result(self, 1, 1)


def _update(self, spec, document, upsert=False, manipulate=False, multi=False,
            check_keys=False, **kwargs):
    written = None if upsert or multi or any(kwargs.values()) else \
        _fast_update_fields(spec, document)
    if written is None:
        return _update.original(self, spec, document, upsert, manipulate, multi,
                                check_keys, **kwargs)
    return update_by_id(self, spec, document, written)


def find_one_and_update(self, filter, update, projection=None, sort=None, upsert=False,
                        return_document=ReturnDocument.BEFORE, **kwargs):
    written = None if sort is not None or upsert or kwargs or \
        self.codec_options.tz_aware else _fast_update_fields(filter, update)
    if written is None:
        return find_one_and_update.original(self, filter, update, projection, sort,
                                            upsert, return_document, **kwargs)
    # mongomock's _find_and_modify (find, update by _id, find again), reading the
    # document once: the update by _id leaves it where it was
    _mm_collection.validate_ok_for_update(update)
    doc = next(iter(self._iter_documents(_patch_filter(filter))), None)
    if doc is None:
        return None
    old = self._copy_only_fields(doc, projection, dict)
    if not old:
        return None
    if "_id" not in old:
        return find_one_and_update.original(self, filter, update, projection, sort,
                                            upsert, return_document, **kwargs)
    update_by_id(self, {"_id": old["_id"]}, update, written)
    if return_document is ReturnDocument.AFTER:
        return self._copy_only_fields(doc, projection, dict)
    return old


def bulk_write(self, requests, ordered=True, bypass_document_validation=False,
               session=None):
    # a list of plain UpdateOnes by _id (the models' reserve, undo and unmark
    # steps): mongomock's BulkOperationBuilder.execute without the builder
    requests = list(requests)
    updates = _UpdateOnes()
    if not requests or bypass_document_validation or session:
        updates.simple = False
    for request in requests:
        if not updates.simple:
            break
        request._add_to_bulk(updates)
    if not updates.simple:
        return bulk_write.original(self, requests, ordered, bypass_document_validation,
                                   session)
    for _, document, _ in updates.ops:
        _mm_collection.validate_ok_for_update(document)
    result = {"nModified": 0, "nUpserted": 0, "nMatched": 0, "writeErrors": [],
              "upserted": [], "writeConcernErrors": [], "nRemoved": 0, "nInserted": 0}
    for index, (spec, document, written) in enumerate(updates.ops):
        try:
            done = update_by_id(self, spec, document, written)
        except _mm_collection.WriteError as error:
            result["writeErrors"].append(
                {"index": index, "code": error.code, "errmsg": str(error)})
            if ordered:
                break
            continue
        result["nMatched"] += done["n"]
        result["nModified"] += done["nModified"]
    if result["writeErrors"]:
        raise _mm_collection.BulkWriteError(result)
    return _mm_collection.BulkWriteResult(result, True)


def _without_sort(name):
    """mongomock's BulkOperationBuilder method ``name`` (``original``), called
    without the ``sort`` argument current pymongo passes and mongomock lacks."""
    def without_sort(*args, sort=None, **kwargs):
        return without_sort.original(*args, **kwargs)

    without_sort.__name__ = without_sort.__qualname__ = name
    return without_sort


add_update = _without_sort("add_update")
add_replace = _without_sort("add_replace")
add_delete = _without_sort("add_delete")
