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


@bp.get("/books")
@signed_in(s.BooksQuery, query)
def store_books(q):
    found = stores.store_books(backend(), q.user_id, q.store_id, q.page, q.page_size, q.after)
    return ok(books=found.rows, **page_fields(found, q))
