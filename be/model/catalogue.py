"""Book descriptions and pictures, each stored once per content.

A listing (``be.model.stores``) is one store's copy of a book; what the store
says about the book (title, every other ``book_info`` field but the price, and
its pictures) is a *description*, a document of ``descriptions`` that the
listing points to by id (``listing.desc``). A description's ``_id`` is the
sha256 of its canonical JSON (the book id, the fields, the pictures' ids), and a
picture's ``_id`` in ``pictures`` is the sha256 of its bytes. So:

* stores that describe a book alike share one description, its search terms and
  its pictures (the course's books, listed by many stores, cost one copy each);
  a picture sent nine times by the classic client is stored once;
* a description never changes once written: another store's words, or this
  store's new ones, are another description. Nothing a seller sends can alter
  what another store's listing shows;
* writing one is idempotent (an upsert of the same content), so a request that
  crashed or raced another writes nothing twice.

A write goes pictures first, then the description, then the caller flips the
listing's pointer in one update: a crash in between leaves a listing showing
its old description or its new one, complete, never a mix. What a crash or an
update leaves behind (a description or picture no listing points to) is garbage
that no read reaches; it is left in place (the audit's summary counts it).

Limits, checked before anything is written (400 naming the field):
``MAX_PICTURES`` pictures of at most ``MAX_PICTURE_BYTES`` decoded each (the
classic client sends 0-9 copies of one cover; 10 of 4 MiB fit the 64 MiB body
limit as base64), and a description whose stored form (BSON, search terms
included) fits MongoDB's 16 MiB document limit.
"""
import base64
import binascii
import hashlib
import json
from collections import namedtuple

import bson
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from be import errors

# book_info fields a description keeps (the id is the listing's; the price too)
FIELDS = ("title", "author", "publisher", "original_title", "translator", "pub_year",
          "pages", "currency_unit", "binding", "isbn", "author_intro", "book_intro",
          "content", "tags")
MAX_PICTURES = 10
MAX_PICTURE_BYTES = 4 * 2**20
MAX_DOCUMENT_BYTES = 16 * 2**20  # MongoDB's BSON document limit

Prepared = namedtuple("Prepared", "id doc pictures")
Prepared.__doc__ = """A description ready to store: its id, its document (search
terms included) and its pictures as [(id, bytes, content type)], unique."""


def description_id(doc):
    """The id of a description: sha256 of the canonical JSON of what it says
    (book id, fields, picture ids), whatever else the document carries. The
    JSON (sorted keys, no spaces, UTF-8) is hashed field by field: the same bytes
    as one ``json.dumps`` of it, without one call of 20-60 ms holding the
    interpreter for a description of several long texts."""
    identity = {"book_id": doc["book_id"], "pictures": list(doc.get("pictures") or [])}
    identity.update({f: doc.get(f) for f in FIELDS})
    digest = hashlib.sha256(b"{")
    for n, key in enumerate(sorted(identity)):
        piece = json.dumps({key: identity[key]}, sort_keys=True, ensure_ascii=False,
                           separators=(",", ":"))[1:-1]
        digest.update((b"," if n else b"") + piece.encode("utf-8"))
    digest.update(b"}")
    return digest.hexdigest()


def picture_id(data):
    return hashlib.sha256(data).hexdigest()


def picture_type(data):
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


def _decode_pictures(pictures):
    pictures = pictures or []
    if len(pictures) > MAX_PICTURES:
        raise errors.BadRequest(f"book_info.pictures: {len(pictures)} pictures, "
                                f"at most {MAX_PICTURES} allowed")
    decoded = []
    for n, text in enumerate(pictures):
        if isinstance(text, str) and text.startswith("data:"):
            # a data URL (what a browser's FileReader gives): its prefix is not base64,
            # and the content type is found from the bytes anyway
            prefix = text[:text.find(",") + 1] if "," in text[:200] else "data:..."
            raise errors.BadRequest(
                f"book_info.pictures.{n}: not valid base64: send the base64 text alone, "
                f"without the data URL prefix {prefix!r}")
        if len(text) * 3 // 4 > MAX_PICTURE_BYTES + 2:  # before decoding it
            raise errors.BadRequest(f"book_info.pictures.{n}: over {MAX_PICTURE_BYTES} bytes "
                                    "decoded (4 MiB)")
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise errors.BadRequest(f"book_info.pictures.{n}: not valid base64")
        if len(data) > MAX_PICTURE_BYTES:
            raise errors.BadRequest(f"book_info.pictures.{n}: {len(data)} bytes decoded, "
                                    f"over {MAX_PICTURE_BYTES} bytes (4 MiB)")
        decoded.append(data)
    return decoded


def _field_bytes(value):
    if isinstance(value, list):
        return sum(len(str(v).encode("utf-8")) for v in value)
    return len(str(value).encode("utf-8")) if value is not None else 0


def _stored_bytes(doc):
    """len(bson.encode(doc)), encoded field by field (the longest single call is
    one field's): 4 bytes of length, each field's element, a closing 0."""
    return 5 + sum(len(bson.encode({key: value})) - 5 for key, value in doc.items())


def _check_size(doc, info):
    size = _stored_bytes(doc)
    if size > MAX_DOCUMENT_BYTES:
        largest = max(FIELDS, key=lambda f: _field_bytes(info.get(f)))
        raise errors.BadRequest(
            f"book_info.{largest}: the book's description would take {size} bytes stored, "
            f"over MongoDB's document limit of {MAX_DOCUMENT_BYTES} bytes (16 MiB)")


def prepare(book_id, info):
    """Check ``info`` (a book_info dict) and build its description, writing
    nothing: 400 naming the field for a bad or oversized picture, too many
    pictures, or a description too large for one MongoDB document. The size is
    checked before the texts are segmented for search (and again with the
    terms): 11 texts of 1,000,000 CJK characters (33 MB) are refused in about
    20 ms instead of after seconds of segmentation."""
    from be.model import search  # search reads descriptions; its terms are built here
    data = _decode_pictures(info.get("pictures"))
    ids = [picture_id(d) for d in data]
    doc = {"book_id": book_id, **{f: info.get(f) for f in FIELDS}, "pictures": ids}
    # stored without its null fields and an empty picture list (missing reads and
    # hashes alike): about 1 MB less per 10,000 descriptions on the embedded engine
    doc = {k: v for k, v in doc.items() if v is not None and not (k == "pictures" and not v)}
    _check_size(dict(doc, _id="0" * 64), info)  # the id: 64 hex digits
    doc["_id"] = description_id(doc)
    doc.update(search.index_fields(info))
    _check_size(doc, info)
    unique = {pid: d for pid, d in zip(ids, data)}
    return Prepared(doc["_id"], doc, [(pid, d, picture_type(d)) for pid, d in unique.items()])


def store(ctx, prepared):
    """Write the pictures, then the description, each only if absent (content
    addressed: present means identical). A listing may point to the description
    once this returns."""
    if prepared.pictures:
        ctx.db.pictures.bulk_write([
            UpdateOne({"_id": pid}, {"$setOnInsert": {"data": data, "content_type": kind}},
                      upsert=True)
            for pid, data, kind in prepared.pictures], ordered=False)
    try:
        # inserted, not upserted: an upsert's $setOnInsert of a 15 MB description
        # was encoded three times on the embedded engine (79 ms under its lock), an
        # insert once (27 ms)
        ctx.db.descriptions.insert_one(dict(prepared.doc))
    except DuplicateKeyError:
        pass  # stored already, by this store or another: the same content


def _insert_absent(collection, docs):
    """Insert those of ``docs`` (content addressed: same ``_id``, same content)
    whose ``_id`` is not stored yet: one read of the ids, one unordered insert of
    the rest. A concurrent writer that stored one meanwhile is a duplicate key,
    which is what we wanted anyway; any other write error is raised."""
    if not docs:
        return
    ids = list({d["_id"] for d in docs})
    present = {d["_id"] for d in collection.find({"_id": {"$in": ids}}, {"_id": 1})}
    missing, seen = [], set(present)
    for doc in docs:
        if doc["_id"] not in seen:
            seen.add(doc["_id"])
            missing.append(doc)
    if not missing:
        return
    try:
        collection.insert_many(missing, ordered=False)
    except BulkWriteError as exc:
        others = [e for e in exc.details.get("writeErrors", []) if e.get("code") != 11000]
        if others or exc.details.get("writeConcernErrors"):
            raise


def store_many(ctx, prepared):
    """``store`` for several descriptions at once (the batched add_books): every
    picture, then every description, each written only if absent, in two reads
    and at most two unordered inserts whatever their number (``store`` makes one
    upsert per description, which on the embedded engine costs ~0.4 ms each
    through mongomock's update machinery; an insert ~0.1 ms). The listings may
    point to any of them once this returns."""
    pictures = [{"_id": pid, "data": data, "content_type": kind}
                for p in prepared for pid, data, kind in p.pictures]
    _insert_absent(ctx.db.pictures, pictures)
    _insert_absent(ctx.db.descriptions, [  # _id first, as store's upsert leaves it
        {"_id": p.id, **{k: v for k, v in p.doc.items() if k != "_id"}} for p in prepared])


def description(ctx, desc_id, projection=None):
    """The description ``desc_id`` (without its search terms unless asked)."""
    doc = ctx.db.descriptions.find_one({"_id": desc_id}, projection or {"terms": 0})
    if doc is None:  # the audit's "catalogue" rule: a listing points only to a stored one
        raise RuntimeError(f"description {desc_id} is missing")
    return doc


def picture(ctx, picture_id_):
    """(bytes, content type) of a stored picture, or None."""
    row = ctx.db.pictures.find_one({"_id": picture_id_})
    if row is None:
        return None
    return bytes(row["data"]), row.get("content_type") or "application/octet-stream"

