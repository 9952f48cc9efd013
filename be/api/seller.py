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


@bp.get("/books")
@signed_in(s.BooksQuery, query)
def store_books(q):
    found = stores.store_books(backend(), q.user_id, q.store_id, q.page, q.page_size, q.after,
                               on_sale=q.on_sale)
    return ok(books=found.rows, **page_fields(found, q))
