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

Inserts and replacements are checked by encoding them (about 10 µs for an order).
An ``$inc`` is checked against the current values before it is applied (no
copy). An update's result is encoded only when the update carries a large value
(a string over 64 KiB, a list of over 1,000 items...): only then can one update
take a document past the limit; many small pushes into one document are not
caught here.
"""
import bson
from pymongo.errors import DocumentTooLarge, WriteError

from be.embedded.copies import _deepcopy

MAX_BSON = 16 * 1024 * 1024
INT64_MIN, INT64_MAX = -2 ** 63, 2 ** 63 - 1
BIG_UPDATE = 64 * 1024


def check_stored(doc):
    """Refuse a document to be stored whole, as pymongo would before sending it."""
    size = len(bson.encode(doc))  # OverflowError for an int past int64, as pymongo's
    if size > MAX_BSON:
        raise DocumentTooLarge(f"BSON document too large ({size} bytes) - the connected "
                               f"server supports BSON document sizes up to {MAX_BSON} bytes.")


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
