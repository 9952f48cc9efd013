"""/seller: stores, listings, shipping and the seller's views."""
from flask import Blueprint

from be.api import schemas as s
from be.api.common import backend, ok, page_fields, query, signed_in
from be.model import orders, stores

bp = Blueprint("seller", __name__, url_prefix="/seller")


@bp.post("/create_store")
@signed_in(s.StoreRef)
def create_store(b):
    stores.create_store(backend(), b.user_id, b.store_id)
    return ok()


@bp.post("/add_book")
@signed_in(s.AddBook)
def add_book(b):
    stores.add_book(backend(), b.user_id, b.store_id, b.book_info.model_dump(), b.stock_level)
    return ok()


@bp.post("/add_books")
@signed_in(s.AddBooks)
def add_books(b):
    """Up to 100 add_books in one request: 200 with one result per book, in order."""
    valid = [i for i in b.books if not isinstance(i, s.Refused)]
    results = iter(stores.add_books(backend(), b.user_id, b.store_id,
                                    [(i.book_info.model_dump(), i.stock_level) for i in valid]))
    books = []
    for item in b.books:
        if isinstance(item, s.Refused):
            books.append({"book_id": item.book_id, "code": 400, "message": item.message})
            continue
        error = next(results)
        books.append({"book_id": item.book_info.id, "code": error.code if error else 200,
                      "message": error.message if error else "ok"})
    return ok(listed=sum(1 for r in books if r["code"] == 200), books=books)


@bp.post("/update_book")
@signed_in(s.UpdateBook)
def update_book(b):
    stores.update_book(backend(), b.user_id, b.store_id, b.book_info.model_dump())
    return ok()


@bp.post("/set_price")
@signed_in(s.SetPrice)
def set_price(b):
    stores.set_price(backend(), b.user_id, b.store_id, b.book_id, b.price)
    return ok()


@bp.post("/set_stock_level")
@signed_in(s.SetStock)
def set_stock_level(b):
    stores.set_stock_level(backend(), b.user_id, b.store_id, b.book_id, b.stock_level)
    return ok()


@bp.post("/unlist_book")
@signed_in(s.ListingRef)
def unlist_book(b):
    stores.unlist_book(backend(), b.user_id, b.store_id, b.book_id)
    return ok()


@bp.post("/relist_book")
@signed_in(s.ListingRef)
def relist_book(b):
    stores.relist_book(backend(), b.user_id, b.store_id, b.book_id)
    return ok()


@bp.post("/add_stock_level")
@signed_in(s.AddStock)
def add_stock_level(b):
    stores.add_stock_level(backend(), b.user_id, b.store_id, b.book_id, b.add_stock_level)
    return ok()


@bp.get("/orders")
@signed_in(s.OrdersQuery, query)
def seller_orders(q):
    found = orders.seller_orders(backend(), q.user_id, q.store_id, q.state,
                                 q.page, q.page_size, q.after)
    return ok(orders=found.rows, **page_fields(found, q))


@bp.get("/book_ids")
@signed_in(s.BookIdsQuery, query)
def store_book_ids(q):
    ids, after = stores.store_book_ids(backend(), q.user_id, q.store_id, q.page_size, q.after)
    return ok(book_ids=ids, next=after)


@bp.get("/books")
@signed_in(s.BooksQuery, query)
def store_books(q):
    found = stores.store_books(backend(), q.user_id, q.store_id, q.page, q.page_size, q.after,
                               on_sale=q.on_sale)
    return ok(books=found.rows, **page_fields(found, q))
