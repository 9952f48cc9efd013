"""Copies of stored documents: mongomock's copies, made without its generic walks.

mongomock snapshots every document it updates, copies every document and field it
returns, and walks every filter and update converting dates, all through generic
code (``copy.deepcopy``, chains of isinstance tests). Stored documents hold only
dicts, lists and immutable BSON values, which a plain recursive copy handles far
faster; each function here answers exactly as the mongomock code it stands in for
(be/tests/test_embedded_fast.py compares them), except that ``_copy_field`` returns
the bytes of a value a data folder keeps in a file (be.embedded.blobs) where the
stored document holds its reference. ``patches`` installs
``COPY_MODULE``, ``_copy_field`` and ``_patch_dates`` in mongomock; ``.original``
on the last two is mongomock's own function, kept by ``patches.apply``.
"""
import copy
import datetime
import types

import bson

from be.embedded import blobs

_IMMUTABLE = frozenset({str, int, float, bool, type(None), bytes, datetime.datetime,
                        bson.ObjectId, bson.Decimal128, bson.Int64, bson.Timestamp,
                        blobs.BlobRef})


def _deepcopy(value, memo=None):
    cls = type(value)
    if cls is dict:
        return {k: _deepcopy(v) for k, v in value.items()}
    if cls is list:
        return [_deepcopy(v) for v in value]
    if cls in _IMMUTABLE:
        return value
    return copy.deepcopy(value, memo)


def _shallow_copy(value):
    return value if type(value) in _IMMUTABLE else copy.copy(value)


# mongomock snapshots every document it updates and copies every document it
# returns with copy.deepcopy/copy.copy; stored documents hold only dicts, lists
# and immutable BSON values, which a plain recursive copy handles far faster.
COPY_MODULE = types.SimpleNamespace(deepcopy=_deepcopy, copy=_shallow_copy)


def _copy_field(obj, container):
    # mongomock's copy of every field it returns, with plain dicts, lists and
    # immutable values handled directly; a value a data folder keeps in a file
    # (be.embedded.blobs) is read from it
    cls = type(obj)
    if cls is blobs.BlobRef:
        return blobs.resolve(obj)
    if container is not dict:
        return _copy_field.original(obj, container)
    if cls is dict:
        return {k: _copy_field(v, dict) for k, v in obj.items()}
    if cls is list:
        return [_copy_field(v, dict) for v in obj]
    if cls in _IMMUTABLE:
        return obj
    return _copy_field.original(obj, container)


def _patch_dates(value):
    """mongomock's patch_datetime_awareness_in_document (datetimes to naive UTC
    milliseconds, a fresh copy of every dict and list), with the common types
    handled without its chain of isinstance tests."""
    cls = type(value)
    if cls is dict:
        return {k: _patch_dates(v) for k, v in value.items()}
    if cls is str or cls is int or cls is bool or cls is float or value is None:
        return value
    if cls is list:
        return [_patch_dates(v) for v in value]
    return _patch_dates.original(value)
