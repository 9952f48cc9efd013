"""/buyer: ordering, paying, funds and the buyer's views."""
from flask import Blueprint

from be.api import schemas as s
from be.api.common import backend, body, ok, query, token
from be.model import orders, users

bp = Blueprint("buyer", __name__, url_prefix="/buyer")


@bp.post("/new_order")
def new_order():
    b = body(s.NewOrder)
    order_id = orders.new_order(backend(), b.user_id, token(), b.store_id,
                                [(line.id, line.count) for line in b.books])
    return ok(order_id=order_id)


@bp.post("/payment")
def payment():
    b = body(s.Payment)
    orders.payment(backend(), b.user_id, b.order_id, b.password)
    return ok()


@bp.post("/add_funds")
def add_funds():
    b = body(s.AddFunds)
    users.add_funds(backend(), b.user_id, b.password, b.add_value)
    return ok()


@bp.post("/receive")
def receive():
    b = body(s.OrderRef)
    orders.receive(backend(), b.user_id, token(), b.order_id)
    return ok()


@bp.post("/cancel_order")
def cancel_order():
    b = body(s.OrderRef)
    orders.cancel_order(backend(), b.user_id, token(), b.order_id)
    return ok()


@bp.get("/orders")
def buyer_orders():
    q = query(s.OrdersQuery)
    rows, total = orders.buyer_orders(backend(), q.user_id, token(),
                                      orders.state_filter(q.state), q.page, q.page_size)
    return ok(orders=rows, total=total, page=q.page, page_size=q.page_size)


@bp.get("/balance")
def balance():
    q = query(s.UserQuery)
    return ok(balance=users.own_balance(backend(), q.user_id, token()))
