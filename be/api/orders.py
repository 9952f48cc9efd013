"""/orders/<id>: one order, for its buyer or its seller."""
from flask import Blueprint

from be.api import schemas as s
from be.api.common import backend, ok, query, token
from be.model import orders

bp = Blueprint("orders", __name__)


@bp.get("/orders/<order_id>")
def get_order(order_id):
    q = query(s.UserQuery)
    return ok(order=orders.get_order(backend(), q.user_id, token(), order_id))
