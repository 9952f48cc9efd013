"""/seller: stores, listings, shipping and the seller's views."""
from flask import Blueprint

from be.api import schemas as s
from be.api.common import backend, body, ok, query, token
from be.model import orders, stores

bp = Blueprint("seller", __name__, url_prefix="/seller")


@bp.post("/create_store")
def create_store():
    b = body(s.StoreRef)
    stores.create_store(backend(), b.user_id, token(), b.store_id)
    return ok()


@bp.post("/add_book")
def add_book():
    b = body(s.AddBook)
    info = b.book_info.model_dump()
    stores.add_book(backend(), b.user_id, token(), b.store_id, info, b.stock_level)
    return ok()


@bp.post("/add_stock_level")
def add_stock_level():
    b = body(s.AddStock)
    stores.add_stock_level(backend(), b.user_id, token(), b.store_id, b.book_id,
                           b.add_stock_level)
    return ok()


@bp.post("/ship")
def ship():
    b = body(s.OrderRef)
    orders.ship(backend(), b.user_id, token(), b.order_id)
    return ok()


@bp.get("/orders")
def seller_orders():
    q = query(s.OrdersQuery)
    rows, total = orders.seller_orders(backend(), q.user_id, token(), q.store_id,
                                       orders.state_filter(q.state), q.page, q.page_size)
    return ok(orders=rows, total=total, page=q.page, page_size=q.page_size)


@bp.get("/books")
def store_books():
    q = query(s.BooksQuery)
    rows, total = stores.store_books(backend(), q.user_id, token(), q.store_id,
                                     q.page, q.page_size)
    return ok(books=rows, total=total, page=q.page, page_size=q.page_size)
