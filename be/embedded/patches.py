"""Every replacement of a mongomock internal, in one table, applied once at start-up.

The embedded engine replaces private mongomock functions (be.embedded.fastpaths,
fastwrites, indexmaps, copies): a typical buyer's list at 100,000 orders took
98 ms before and 0.98 ms after, new_order 1.2 ms before and 0.59 ms after
(doc/scaling.md). Private code can change in any release, so ``apply`` first
refuses a mongomock other than the one these replacements were tested against
(``TESTED_MONGOMOCK``, the pin in requirements.txt) and any target attribute
that no longer exists, with a message saying what to do, instead of failing
later inside a request. Nothing else in be.embedded assigns onto mongomock
(be/tests/test_embedded_patches.py diffs mongomock's attributes around
start-up against ``PATCHES``).

``apply`` keeps the value each row replaces as its replacement's ``original``
attribute: the replacements fall back to mongomock's own code through it.
"""
import importlib
import types
from typing import Any, NamedTuple

import mongomock

from be.embedded import copies, fastpaths, fastwrites, indexmaps, limits

# The mongomock release the replacements were written and tested against; the
# pin in requirements.txt must read the same (a test checks it).
TESTED_MONGOMOCK = "4.3.0"


class Patch(NamedTuple):
    target: str       # dotted path of the module or class patched
    name: str         # its attribute replaced
    replacement: Any  # what the attribute becomes
    why: str


_COLLECTION = "mongomock.collection.Collection"
_STORE = "mongomock.store.CollectionStore"
_BUILDER = "mongomock.collection.BulkOperationBuilder"

PATCHES = (
    # reads: which documents a filter selects (fastpaths)
    Patch(_COLLECTION, "_iter_documents", fastpaths._iter_documents,
          "a single _id or $in of _ids is looked up, an indexed field reads the index "
          "maps, other scans are pre-screened; mongomock matches every document"),
    Patch(_STORE, "_remove_expired_documents", fastpaths._remove_expired_documents,
          "TTL expiry at most once a second per collection, not on every read"),
    Patch(_COLLECTION, "_get_dataset", fastpaths._get_dataset,
          "sorts on plain values compare natively, not through a Python BSON comparison"),
    Patch("mongomock.collection.Cursor", "_compute_results", fastpaths._compute_results,
          "a limited cursor copies only its window; mongomock copies every match first"),
    Patch(_COLLECTION, "count_documents", fastpaths.count_documents,
          "a count pinning a prefix of an index's keys bisects its ordered index"),
    Patch(_COLLECTION, "find_one", fastpaths.find_one,
          "a cursor limited to one document, as pymongo's; mongomock copies every match"),
    Patch(_COLLECTION, "_copy_only_fields", fastpaths._copy_only_fields,
          "plain include/exclude projections of top-level fields copied directly"),
    # validation (limits)
    Patch("mongomock.collection", "BSON", limits.MongomockValidation,
          "a large inserted document is checked from its values' lengths (a 15 MB book: "
          "0.1 ms), not encoded in full under the engine's lock only to be validated"),
    # copies (copies)
    Patch("mongomock.collection", "copy", copies.COPY_MODULE,
          "deepcopy/copy of stored documents by a plain recursive copy, not the copy module"),
    Patch("mongomock.collection", "_copy_field", copies._copy_field,
          "returned fields: plain dicts, lists and immutable values copied directly"),
    Patch("mongomock.helpers", "patch_datetime_awareness_in_document", copies._patch_dates,
          "the date walk over every filter, update and document, common types first"),
    # index maps kept current, unique indexes by map (indexmaps)
    Patch(_STORE, "__init__", indexmaps._store_init,
          "documents in a plain dict (insertion-ordered) instead of an OrderedDict: "
          "about 70 bytes a document less"),
    Patch(_STORE, "__setitem__", indexmaps._store_setitem,
          "index maps follow inserts, replaced documents and rollbacks"),
    Patch(_STORE, "__delitem__", indexmaps._store_delitem,
          "index maps follow deletes and TTL expiry"),
    Patch(_STORE, "drop", indexmaps._store_drop,
          "a dropped collection drops its index maps"),
    Patch(_COLLECTION, "_apply_update_document", indexmaps._apply_update_document,
          "index maps follow in-place updates; each document gets its own copy of the "
          "update's values (mongomock shares them between the documents it updates)"),
    Patch(_COLLECTION, "_apply_update_pipeline", indexmaps._apply_update_pipeline,
          "as _apply_update_document, for pipeline updates"),
    Patch(_COLLECTION, "_ensure_uniques", indexmaps._ensure_uniques,
          "unique indexes checked through a hash map, not a scan per index per write"),
    # writes by _id (fastwrites)
    Patch(_COLLECTION, "_update", fastwrites._update,
          "an update by _id snapshots and compares only the fields it writes; "
          "mongomock deep-copies and compares the whole document"),
    Patch(_COLLECTION, "find_one_and_update", fastwrites.find_one_and_update,
          "by _id: the document read once, not three times, and only written fields copied"),
    Patch(_COLLECTION, "bulk_write", fastwrites.bulk_write,
          "a list of UpdateOnes by _id applied without mongomock's bulk builder"),
    Patch(_BUILDER, "add_update", fastwrites.add_update,
          "current pymongo passes a sort mongomock's builder does not take"),
    Patch(_BUILDER, "add_replace", fastwrites.add_replace,
          "current pymongo passes a sort mongomock's builder does not take"),
    Patch(_BUILDER, "add_delete", fastwrites.add_delete,
          "current pymongo passes a sort mongomock's builder does not take"),
)

_applied = False


def resolve(path):
    """The module or class at a dotted path such as "mongomock.collection.Cursor",
    or None when it no longer exists."""
    module, _, rest = path.partition(".")
    obj = importlib.import_module(module)
    for part in rest.split(".") if rest else ():
        found = getattr(obj, part, None)
        if found is None and isinstance(obj, types.ModuleType):
            try:
                found = importlib.import_module(f"{obj.__name__}.{part}")
            except ImportError:
                return None
        if found is None:
            return None
        obj = found
    return obj


def check():
    """Refuse (RuntimeError) a mongomock other than the tested one, or one missing
    an attribute the table replaces: the replacements copy its private code."""
    found = getattr(mongomock, "__version__", "an unknown version")
    if found != TESTED_MONGOMOCK:
        raise RuntimeError(
            f"bookstore's embedded engine was tested with mongomock {TESTED_MONGOMOCK}; "
            f"found {found}: install the version pinned in requirements.txt "
            f"(pip install -r requirements.txt)")
    missing = []
    for patch in PATCHES:
        target = resolve(patch.target)
        if target is None:
            missing.append(patch.target)
        elif not hasattr(target, patch.name):
            missing.append(f"{patch.target}.{patch.name}")
    if missing:
        missing = list(dict.fromkeys(missing))  # a missing class: once, not per row
        names = ", ".join(missing)
        one = len(missing) == 1
        raise RuntimeError(
            f"{names} {'no longer exists' if one else 'no longer exist'} in mongomock "
            f"{found}, and bookstore's embedded engine patches {'it' if one else 'them'} "
            f"(be/embedded/patches.py): install the version pinned in requirements.txt "
            f"(pip install -r requirements.txt)")


def apply():
    """Check (every time: an engine is never made over an unfit mongomock), then
    install the table once; a replacement already in place is left alone."""
    global _applied
    check()
    if _applied:
        return
    for patch in PATCHES:
        target = resolve(patch.target)
        original = getattr(target, patch.name)
        if original is patch.replacement:
            continue
        patch.replacement.original = original
        setattr(target, patch.name, patch.replacement)
    _applied = True
