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
  update included.

Inserts and replacements are checked by encoding them (about 10 µs for an order).
An update is checked when it has an ``$inc`` (the written fields are copied first,
to be put back on refusal) or when its own payload is large (over 64 KiB: only
then can one update take a document past the limit; many small pushes into one
document are not caught here).
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


def guard(doc, update, apply):
    """``apply`` (an in-place update of the stored ``doc``), refused as MongoDB
    refuses it: the document is put back as it was and WriteError raised."""
    if not isinstance(update, dict):
        return apply
    incs = update.get("$inc") if isinstance(update.get("$inc"), dict) else None
    big = not incs and len(bson.encode(update)) > BIG_UPDATE if len(update) else False
    if not incs and not big:
        return apply

    def guarded():
        fields = _top_fields(update)
        before = {f: _deepcopy(doc[f]) for f in fields if f in doc}
        result = apply()
        problem = None
        for path in incs or ():
            value = _get(doc, path)
            if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
                problem = WriteError(
                    f"Failed to apply $inc operations to current value for document "
                    f"{{_id: {doc.get('_id')!r}}}: {path} would be {value}, past int64", 2,
                    {"code": 2, "errmsg": "Failed to apply $inc operations"})
                break
        if problem is None and big:
            size = len(bson.encode(doc))
            if size > MAX_BSON:
                problem = WriteError(
                    f"Resulting document after update is larger than {MAX_BSON}", 17419,
                    {"code": 17419, "errmsg": "Resulting document after update is larger"})
        if problem is not None:
            for f in fields:
                if f in before:
                    doc[f] = before[f]
                else:
                    doc.pop(f, None)
            raise problem
        return result
    return guarded
