"""/buyer: ordering, paying, funds and the buyer's views."""
from flask import Blueprint

from be.api import schemas as s
from be.api.common import backend, ok, page_fields, password_checked, query, signed_in
from be.api.idempotency import idempotent
from be.model import orders, users

bp = Blueprint("buyer", __name__, url_prefix="/buyer")


@bp.post("/new_order")
@signed_in(s.NewOrder)
@idempotent("new_order")
def new_order(b):
    order_id = orders.new_order(backend(), b.user_id, b.store_id,
                                [(line.id, line.count) for line in b.books])
    return ok(order_id=order_id)


@bp.post("/payment")
@password_checked(s.Payment)
@idempotent("payment")
def payment(b):
    orders.payment(backend(), b.user_id, b.order_id)
    return ok()


@bp.post("/add_funds")
@password_checked(s.AddFunds)
@idempotent("add_funds")
def add_funds(b):
    users.add_funds(backend(), b.user_id, b.add_value)
    return ok()


@bp.get("/orders")
@signed_in(s.OrdersQuery, query)
def buyer_orders(q):
    found = orders.buyer_orders(backend(), q.user_id, q.state, q.page, q.page_size, q.after)
    return ok(orders=found.rows, **page_fields(found, q))


@bp.get("/balance")
@signed_in(s.UserQuery, query)
def balance(q):
    return ok(balance=users.own_balance(backend(), q.user_id))
