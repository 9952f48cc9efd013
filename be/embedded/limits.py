"""What MongoDB refuses, refused here too, so that a test on the embedded engine
fails where production would (mongomock stores anything Python can hold).

* A document over 16 MiB of BSON (16,777,216 bytes): an insert or replacement is
  refused as pymongo refuses it before sending (``DocumentTooLarge``); an update
  whose result would be larger gets the server's WriteError 17419, and the
  document stays as it was.
* An integer past int64 (|n| >= 2^63): an insert is refused as pymongo's BSON
  encoder refuses it (``OverflowError``); an ``$inc`` whose result would overflow
  gets a WriteError (code 2, BadValue, as the server answers "Failed to apply $inc
  operations"), and the document stays as it was, every other change of the same
  update included. An update carrying such an integer anywhere (``$set``,
  ``$max``, ``$push``...) is refused with pymongo's ``OverflowError``: pymongo
  cannot encode the command, so MongoDB never sees it. (mongomock would store it,
  and a data folder's journal could not hold the result.)

Inserts and replacements are checked by encoding them (about 10 µs for an order),
except a document whose top-level texts pass 1 MiB: its size is bounded from the
lengths of its values instead (for a text of 4,096 characters or more, CPython's
own width of its characters says how many UTF-8 bytes each can take), and only a
bound past 16 MiB is encoded to be measured. An add_book at the schema's limit
(5 texts of 1,000,000 CJK characters: 15 MB of BSON) was encoded in 19 ms under
the engine's lock for nothing but this check; bounding it takes under 0.1 ms.
An ``$inc`` is checked against the current values before it is applied (no
copy). An update's result is encoded only when the update carries a large value
(a string over 64 KiB, a list of over 1,000 items...): only then can one update
take a document past the limit; many small pushes into one document are not
caught here.
"""
import datetime
import sys

import bson
from bson.objectid import ObjectId
from pymongo.errors import DocumentTooLarge, WriteError

from be.embedded.copies import _deepcopy

MAX_BSON = 16 * 1024 * 1024
INT64_MIN, INT64_MAX = -2 ** 63, 2 ** 63 - 1
BIG_UPDATE = 64 * 1024


BOUND_FROM = 1 << 20  # top-level texts past this: bounded before (instead of) encoding
_WIDE_TEXT = 4096     # texts at least this long are bounded from their character width
_FIXED = {float: 8, datetime.datetime: 8, ObjectId: 12, type(None): 0}


def _text_length(doc):
    """Characters and bytes in ``doc``'s top-level texts (a quick first look)."""
    return sum(len(v) for v in doc.values() if isinstance(v, (str, bytes)))


def _utf8_bound(text):
    """At most how many bytes ``text`` takes in UTF-8. CPython stores a text with
    1, 2 or 4 bytes per character after its widest one (below U+0100, below
    U+10000, above): 2, 3 or 4 UTF-8 bytes at most; ASCII exactly one."""
    if text.isascii():
        return len(text)
    if len(text) < _WIDE_TEXT:
        return 4 * len(text)
    try:
        width = sys.getsizeof(text) // (len(text) + 1)
    except TypeError:  # not CPython
        width = 4
    return {1: 2, 2: 3}.get(width, 4) * len(text)


def _bound(value):
    """An upper bound of ``value``'s size as a BSON element's value, or None when
    it cannot be bounded from lengths alone (a type not listed, an int past int64:
    left to the encoder, which refuses what pymongo refuses)."""
    kind = type(value)
    if kind is str:
        return 5 + _utf8_bound(value)
    if isinstance(value, dict):
        total = 5
        for key, item in value.items():
            if type(key) is not str or "\x00" in key:
                return None
            size = _bound(item)
            if size is None:
                return None
            total += 2 + _utf8_bound(key) + size
        return total
    if kind is list or kind is tuple:
        total = 5
        for n, item in enumerate(value):
            size = _bound(item)
            if size is None:
                return None
            total += 2 + len(str(n)) + size
        return total
    if isinstance(value, bytes):  # bson.Binary too
        return 5 + len(value)
    if kind is bool:
        return 1
    if isinstance(value, int):
        return 8 if INT64_MIN <= value <= INT64_MAX else None
    return _FIXED.get(kind)


def _large_bound(doc):
    """A bound of a document whose top-level texts pass 1 MiB, or None (a small
    document, or one the bound cannot vouch for: encode it)."""
    if isinstance(doc, dict) and _text_length(doc) > BOUND_FROM:
        return _bound(doc)
    return None


def check_stored(doc):
    """Refuse a document to be stored whole, as pymongo would before sending it."""
    bound = _large_bound(doc)
    if bound is not None and bound <= MAX_BSON:
        return
    size = len(bson.encode(doc))  # OverflowError for an int past int64, as pymongo's
    if size > MAX_BSON:
        raise DocumentTooLarge(f"BSON document too large ({size} bytes) - the connected "
                               f"server supports BSON document sizes up to {MAX_BSON} bytes.")


class MongomockValidation:
    """Stands for ``bson.BSON`` in mongomock.collection (be.embedded.patches), which
    encodes every inserted document, every replacement and every ``$set`` value only
    to refuse what BSON cannot hold, and throws the bytes away: a 15 MB book was
    encoded once there and once more by ``check_stored``. Here a large document
    is vouched for by its bound (the same types and int64 range the encoder
    accepts); anything else is encoded as before. The 16 MiB limit stays with
    ``check_stored``, as it was."""

    @staticmethod
    def encode(document, check_keys=False, codec_options=None):
        if _large_bound(document) is None:
            bson.encode(document, check_keys)


def _top_fields(update):
    return {path.split(".", 1)[0] for op, fields in update.items()
            if op.startswith("$") and isinstance(fields, dict) for path in fields}


def _get(doc, path):
    for part in path.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return None
        doc = doc[part]
    return doc


def _inc_overflow(doc, incs):
    """The first ``$inc`` path whose result would pass int64, with that result."""
    for path, delta in incs.items():
        current = _get(doc, path)
        if current is None:
            current = 0
        if type(current) is int and type(delta) is int:
            if not INT64_MIN <= current + delta <= INT64_MAX:
                return path, current + delta
    return None


def _past_int64(value):
    """Does ``value`` hold an integer BSON cannot encode? Walks lists and
    documents (an update's operands are small: a few fields)."""
    if type(value) is int:
        return not INT64_MIN <= value <= INT64_MAX
    if isinstance(value, dict):
        return any(_past_int64(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_past_int64(v) for v in value)
    return False


def _refuse_overflow():
    raise OverflowError("MongoDB can only handle up to 8-byte ints")


def _large(update):
    """Could this update alone take a document past 16 MiB? Only a large value can."""
    for fields in update.values():
        if isinstance(fields, dict):
            for value in fields.values():
                if isinstance(value, (str, bytes)) and len(value) > BIG_UPDATE:
                    return True
                if isinstance(value, (list, dict)) and (
                        len(value) > 1000 or len(bson.encode({"v": value})) > BIG_UPDATE):
                    return True
    return False


def guard(doc, update, apply):
    """``apply`` (an in-place update of the stored ``doc``), refused as MongoDB
    refuses it, with the document left as it was: an ``$inc`` that would overflow
    is refused before anything is applied; an update carrying a large value has the
    fields it writes copied first and put back if the result is over 16 MiB."""
    if not isinstance(update, dict):
        return apply
    if update and not any(str(k).startswith("$") for k in update):
        # a replacement: refused whole before mongomock empties the stored document
        check_stored(dict(update, _id=doc.get("_id")))
        return apply
    if _past_int64(update):
        return _refuse_overflow
    incs = update.get("$inc")
    if isinstance(incs, dict):
        over = _inc_overflow(doc, incs)
        if over is not None:
            path, value = over

            def refuse():
                raise WriteError(
                    f"Failed to apply $inc operations to current value for document "
                    f"{{_id: {doc.get('_id')!r}}}: {path} would be {value}, past int64", 2,
                    {"code": 2, "errmsg": "Failed to apply $inc operations"})
            return refuse
    if not _large(update):
        return apply

    def guarded():
        fields = _top_fields(update)
        before = {f: _deepcopy(doc[f]) for f in fields if f in doc}
        result = apply()
        size = len(bson.encode(doc))
        if size > MAX_BSON:
            for f in fields:
                if f in before:
                    doc[f] = before[f]
                else:
                    doc.pop(f, None)
            raise WriteError(
                f"Resulting document after update is larger than {MAX_BSON}", 17419,
                {"code": 17419, "errmsg": "Resulting document after update is larger"})
        return result
    return guarded
