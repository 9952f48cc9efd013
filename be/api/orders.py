"""/orders/<id>: one order, for its buyer or its seller."""
from flask import Blueprint

from be.api import schemas as s
from be.api.common import backend, ok, query, signed_in
from be.model import orders

bp = Blueprint("orders", __name__)


@bp.get("/orders/<order_id>")
@signed_in(s.UserQuery, query)
def get_order(q, order_id):
    return ok(order=orders.get_order(backend(), q.user_id, order_id))
