"""Orders: one order for its buyer or seller, and the lifecycle's actions that
need nothing but the order (cancel_order, ship, receive), one route per row of
the table in be.model.lifecycle that names a ``path``."""
from flask import Blueprint

from be.api import schemas as s
from be.api.common import backend, ok, query, signed_in
from be.model import orders
from be.model.lifecycle import ACTIONS

bp = Blueprint("orders", __name__)


@bp.get("/orders/<order_id>")
@signed_in(s.UserQuery, query)
def get_order(q, order_id):
    return ok(order=orders.get_order(backend(), q.user_id, order_id))


def _action_view(name):
    @signed_in(s.OrderRef)
    def view(b):
        orders.act(backend(), name, b.user_id, b.order_id)
        return ok()
    view.__name__ = view.__qualname__ = name
    return view


for _action in ACTIONS.values():
    if _action.path:
        bp.add_url_rule(_action.path, endpoint=_action.name, view_func=_action_view(_action.name),
                        methods=["POST"])
