"""Bounded list costs: cursor paging, a cap on offset depth and a bounded count.

On MongoDB ``skip`` walks the index entry by entry and ``count_documents`` visits
every matching entry: with offset paging a seller with 10^6 orders pays for all
of them on every page, and ``page`` up to 10^6 let one request skip 10^8 entries.
So the lists (a buyer's or seller's orders, a store's books):

* page with a cursor: ``after`` is the opaque position of the last row of the
  previous page (its sort key: ``created_at`` and ``_id`` for orders, ``book_id``
  for a store's books), and the next page is an index range from there: its cost
  is the page, however deep. Replies carry ``next`` (the cursor after their last
  row) while more rows follow;
* keep ``page``/``page_size`` for classic clients, but only over the first
  ``MAX_OFFSET_ROWS`` (10,000) rows: a page reaching beyond is refused (400) with
  a hint to follow ``next``;
* count at most ``COUNT_BOUND + 1`` (10,001) entries: past the bound ``total``
  is ``COUNT_BOUND`` and ``total_is_lower_bound`` is true.

A cursor is urlsafe base64 (unpadded) of a small JSON array naming its list kind
and the row's sort key; nothing in it is secret, but clients must treat it as
opaque. It stays valid whatever is inserted or removed meanwhile: the next page
starts strictly after the row it names, so no row is returned twice and rows
that existed throughout are all returned once, in order.
"""
import base64
import binascii
import json
from datetime import datetime, timedelta
from typing import NamedTuple, Optional

from be import errors

MAX_OFFSET_ROWS = 10_000
COUNT_BOUND = 10_000
_EPOCH = datetime(1970, 1, 1)


class Page(NamedTuple):
    rows: list
    total: int
    total_is_lower_bound: bool
    next: Optional[str]  # the cursor after the last row, or None at the end


def check(page, page_size, after):
    """400 for an offset page reaching past ``MAX_OFFSET_ROWS``, or for a cursor
    combined with a page number (which of the two would decide where to start?)."""
    if after is not None and page > 1:
        raise errors.BadRequest("invalid field 'page': 'after' continues from a cursor and "
                                "cannot be combined with page > 1; leave page out")
    if page * page_size > MAX_OFFSET_ROWS:
        raise errors.BadRequest(
            f"invalid field 'page': page {page} of {page_size} rows reaches row "
            f"{page * page_size:,}; pages by number stop at row {MAX_OFFSET_ROWS:,}: "
            f"follow the reply's 'next' with 'after' to read further")


def skip(page, page_size, after):
    return 0 if after is not None else (page - 1) * page_size


def count(collection, query):
    """(total, total_is_lower_bound): at most ``COUNT_BOUND + 1`` entries counted."""
    found = collection.count_documents(query, limit=COUNT_BOUND + 1)
    if found > COUNT_BOUND:
        return COUNT_BOUND, True
    return found, False


def finish(rows, page_size, cursor_of, total):
    """The Page for ``rows`` as read with ``limit=page_size + 1`` (the extra row
    only says whether another page follows)."""
    more = len(rows) > page_size
    rows = rows[:page_size]
    return Page(rows, total[0], total[1], cursor_of(rows[-1]) if more else None)


# ---------------------------------------------------------------- cursors

def encode(kind, *key):
    text = json.dumps([kind, *key], ensure_ascii=False, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def decode(kind, cursor, *types):
    """The sort key a cursor of list ``kind`` holds, checked against ``types``;
    400 naming ``after`` for anything else (another list's cursor included)."""
    bad = errors.BadRequest(f"invalid field 'after': not a cursor of this list "
                            f"(pass back the 'next' of a {kind} reply unchanged)")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw.decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad
    if not isinstance(value, list) or len(value) != len(types) + 1 or value[0] != kind:
        raise bad
    key = value[1:]
    if not all(type(v) is t for v, t in zip(key, types)):
        raise bad
    return key


def millis(moment):
    """A stored (naive UTC, millisecond) datetime as integer milliseconds: exact."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def from_millis(ms):
    try:
        return _EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        raise errors.BadRequest("invalid field 'after': not a cursor of this list")
