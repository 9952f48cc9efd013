"""Exactly-once side effects of an order on other documents.

MongoDB without transactions changes one document atomically, so an order step
that touches listings or users is split: the order first records what it owes
(``busy.todo``), then each effect is applied to its target with a marker
``<order_id>:<effect>`` pushed in the same update and guarded by its absence,
then the order swaps the todo for the markers' removal ("~effect"), removes them,
and clears ``busy``. A crash anywhere leaves the order busy; running its todo
again (the sweep does) applies nothing twice and loses nothing.

Effects:  restore (stock back to each listing), refund (total back to the buyer),
credit (total to the seller), debit.<attempt> (total from the buyer; applied by
payment itself because it can fail), reserve (stock from each listing; applied
by new_order itself because it can fail).
"""
from pymongo import UpdateOne

from be.db import listing_id


def key(order, effect):
    return f"{order['_id']}:{effect}"


def _targets(order, effect):
    """(collection, [(document id, amount)]) that an effect changes."""
    name = effect.split(".", 1)[0]
    if name in ("reserve", "restore"):
        return "listings", [(listing_id(order["store_id"], i["book_id"]), i["count"])
                            for i in order["items"]]
    if name in ("debit", "refund"):
        return "users", [(order["buyer_id"], order["total_price"])]
    if name == "credit":
        return "users", [(order["seller_id"], order["total_price"])]
    raise ValueError(f"unknown effect {effect}")


_FIELD = {"listings": "stock_level", "users": "balance"}
_SIGN = {"reserve": -1, "debit": -1, "restore": 1, "refund": 1, "credit": 1}


def apply(db, order, effect):
    """Apply a non-failing effect once (restore, refund, credit)."""
    coll, targets = _targets(order, effect)
    k = key(order, effect)
    sign = _SIGN[effect.split(".", 1)[0]]
    ops = [UpdateOne({"_id": doc_id, "ops": {"$ne": k}},
                     {"$inc": {_FIELD[coll]: sign * amount}, "$push": {"ops": k}})
           for doc_id, amount in targets]
    db[coll].bulk_write(ops, ordered=False)


def unmark(db, order, effect):
    """Remove an effect's markers once the order no longer needs them."""
    coll, targets = _targets(order, effect)
    k = key(order, effect)
    ops = [UpdateOne({"_id": doc_id, "ops": k}, {"$pull": {"ops": k}}) for doc_id, _ in targets]
    db[coll].bulk_write(ops, ordered=False)


def undo(db, order, effect):
    """Take back whatever part of a failable effect (reserve, debit) was applied:
    each target that carries the marker gets its amount back and loses the marker."""
    coll, targets = _targets(order, effect)
    k = key(order, effect)
    sign = -_SIGN[effect.split(".", 1)[0]]
    ops = [UpdateOne({"_id": doc_id, "ops": k},
                     {"$inc": {_FIELD[coll]: sign * amount}, "$pull": {"ops": k}})
           for doc_id, amount in targets]
    db[coll].bulk_write(ops, ordered=False)


def run(db, order, todo):
    """Carry out a todo list: plain effects apply, "~effect" entries unmark."""
    for entry in todo:
        if entry.startswith("~"):
            unmark(db, order, entry[1:])
        else:
            apply(db, order, entry)
