"""Move a MongoDB bookstore database to each store's own descriptions (issue 12).

    MONGODB_URI=mongodb://host:27017/?replicaSet=rs0 [BOOKSTORE_DB=bookstore] \\
        python -m scripts.migrate_catalogue

Before issue 12 a book's info lived once per book id in ``books`` (with its
search terms) and its pictures in ``pictures`` under ``"<book_id>#<n>"``; a
listing held only its title, price and stock. Now a listing points (``desc``)
to a content-addressed description (be.model.catalogue). This gives every
listing without one the description its book showed until then (the ``books``
document and its pictures: what every store of that book showed), puts it on
sale, and then removes the old ``books`` collection, the old pictures and their
index once no listing is left to convert.

Stop the API servers first (they would fail on listings not converted yet).
Idempotent and resumable: each listing is converted by one guarded update after
its description is stored, so a crash or a second run converts each once.
Exit status: 0 done, 1 some listings could not be converted (each reported;
the old documents are then kept), 2 no database configured.
"""
import base64
import os
import sys

from be import errors
from be.model import catalogue

OLD_PICTURES_INDEX = [("book_id", 1), ("n", 1)]


def _old_info(db, book_id, listing):
    """The book_info a pre-issue-12 listing showed: its book's shared document and
    pictures (the listing's own title if the book document is gone)."""
    book = db.books.find_one({"_id": book_id}) or {}
    info = {f: book.get(f) for f in catalogue.FIELDS}
    info["title"] = info["title"] or listing.get("title") or str(book_id)
    pictures = []
    for n in range(book.get("picture_count") or 0):
        row = db.pictures.find_one({"_id": f"{book_id}#{n}"})
        if row is not None:
            pictures.append(base64.b64encode(bytes(row["data"])).decode("ascii"))
    info["pictures"] = pictures
    return info


def migrate(ctx, out=print):
    """Convert every listing without a description; returns the list of
    (listing id, reason) that could not be."""
    failed = []
    converted = 0
    for listing in ctx.db.listings.find({"desc": {"$exists": False}}):
        try:
            prepared = catalogue.prepare(listing["book_id"],
                                         _old_info(ctx.db, listing["book_id"], listing))
        except errors.BadRequest as exc:  # over today's limits: left for a person to decide
            failed.append((listing["_id"], exc.message))
            continue
        catalogue.store(ctx, prepared)
        done = ctx.db.listings.update_one(
            {"_id": listing["_id"], "desc": {"$exists": False}},
            {"$set": {"desc": prepared.id, "on_sale": True}, "$unset": {"title": ""}})
        converted += done.modified_count
    out(f"{converted} listings converted, {len(failed)} could not be")
    for lid, reason in failed:
        out(f"  listing {lid}: {reason}")
    if not failed:
        ctx.db.books.drop()
        dropped = ctx.db.pictures.delete_many({"book_id": {"$exists": True}}).deleted_count
        for name, spec in ctx.db.pictures.index_information().items():
            if spec.get("key") == OLD_PICTURES_INDEX:
                ctx.db.pictures.drop_index(name)
        out(f"old catalogue removed ({dropped} old pictures)")
    return failed


def main(argv=None):
    if not os.environ.get("MONGODB_URI"):
        print("migrate_catalogue converts a real database: set MONGODB_URI (and "
              "BOOKSTORE_DB). The embedded engine starts empty, with nothing to convert.",
              file=sys.stderr)
        return 2
    from be.backend import Backend
    return 1 if migrate(Backend()) else 0


if __name__ == "__main__":
    sys.exit(main())
