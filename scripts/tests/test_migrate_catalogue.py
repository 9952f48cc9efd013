"""scripts/migrate_catalogue.py on a database laid out as before issue 12."""
import pytest

from be.audit import audit
from be.backend import Backend
from be.clock import ManualClock
from be.config import Settings
from be.db import listing_id
from be.model import catalogue, orders, search, stores, users
from scripts import migrate_catalogue

PNG = b"\x89PNG\r\n\x1a\n" + b"\x05" * 20


@pytest.fixture
def old():
    """Two stores listing b1 (one shared book document, as before issue 12, with a
    picture) and one listing b2 whose book document is gone; an order open on b1."""
    ctx = Backend(Settings.from_env(mongodb_uri="", password_method="pbkdf2:sha256:1000"),
                  clock=ManualClock())
    db = ctx.db
    for user in ("seller", "rival", "buyer"):
        users.register(ctx, user, "pw")
    users.add_funds(ctx, "buyer", 10_000)
    db.stores.insert_many([{"_id": "s1", "owner_id": "seller"},
                           {"_id": "s2", "owner_id": "rival"}])
    old_listings = [("s1", "b1", "三体", 2300), ("s2", "b1", "三体", 2000), ("s1", "b2", "Dune", 900)]
    for store, book, title, price in old_listings:
        db.listings.insert_one({"_id": listing_id(store, book), "store_id": store,
                                "book_id": book, "title": title, "price": price,
                                "stock_level": 10, "stock_added": 10})
    info = {"title": "三体", "author": "刘慈欣", "tags": ["科幻"], "price": 2300}
    db.books.insert_one(dict(info, _id="b1", picture_count=1, listed=True,
                             terms=["ti:三体"]))
    db.pictures.create_index([("book_id", 1), ("n", 1)])
    db.pictures.insert_one({"_id": "b1#0", "book_id": "b1", "n": 0, "data": PNG,
                            "content_type": "image/png"})
    return ctx


def test_every_old_listing_gets_its_books_description_and_the_old_catalogue_goes(old):
    ctx = old
    assert {v.kind for v in audit(ctx.db)} == {"catalogue"}  # the audit says: migrate
    assert migrate_catalogue.migrate(ctx, out=lambda *a: None) == []
    assert not audit(ctx.db)
    for store in ("s1", "s2"):
        book = search.get_book(ctx, "b1", store)
        assert (book["title"], book["author"], book["tags"], book["picture_count"]) == \
            ("三体", "刘慈欣", ["科幻"], 1)
        assert search.get_picture(ctx, "b1", 0, store) == (PNG, "image/png")
    assert search.get_book(ctx, "b1", "s2")["price"] == 2000  # the listing's price stays
    assert search.get_book(ctx, "b2", "s1")["title"] == "Dune"
    (hit,) = search.search_books(ctx, "三体")[0]
    assert [r["store_id"] for r in hit["listings"]] == ["s1", "s2"]  # one shared description
    assert ctx.db.descriptions.count_documents({}) == 2
    assert "books" not in ctx.db.list_collection_names()
    assert ctx.db.pictures.count_documents({}) == 1
    assert [v["key"] for v in ctx.db.pictures.index_information().values()] == [[("_id", 1)]]
    # the stores work as they do after issue 12
    stores.update_book(ctx, "rival", "s2", {"id": "b1", "title": "The Three-Body Problem"})
    assert search.get_book(ctx, "b1", "s1")["title"] == "三体"
    orders.new_order(ctx, "buyer", "s1", [("b1", 1), ("b2", 1)])
    assert not audit(ctx.db)
    # a second run finds nothing to do
    said = []
    assert migrate_catalogue.migrate(ctx, out=said.append) == []
    assert said[0].startswith("0 listings converted")


def test_a_listing_over_the_limits_is_reported_and_the_old_catalogue_kept(old, monkeypatch):
    """An old book whose description would not fit the limit (lowered here to 1 MiB:
    the embedded engine, like MongoDB, stores no document over 16 MiB to begin with)."""
    ctx = old
    monkeypatch.setattr(catalogue, "MAX_DOCUMENT_BYTES", 2**20)
    ctx.db.books.update_one({"_id": "b1"}, {"$set": {"picture_count": 1,
                                                    "content": "x" * (2 * 2**20)}})
    said = []
    failed = migrate_catalogue.migrate(ctx, out=said.append)
    assert [lid for lid, _ in failed] == [listing_id("s1", "b1"), listing_id("s2", "b1")]
    assert all(reason.startswith("book_info.content:") for _, reason in failed)
    assert ctx.db.books.count_documents({}) == 1 and ctx.db.pictures.count_documents({}) == 1
    assert search.get_book(ctx, "b2", "s1")["title"] == "Dune"  # the others are converted


def test_command_line_needs_a_database(monkeypatch, capsys):
    monkeypatch.delenv("MONGODB_URI", raising=False)
    assert migrate_catalogue.main([]) == 2
    assert "MONGODB_URI" in capsys.readouterr().err
