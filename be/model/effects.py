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


# effect -> (collection, what it changes there, sign of the change)
EFFECTS = {
    "reserve": ("listings", "lines", -1),
    "restore": ("listings", "lines", 1),
    "debit": ("users", "buyer_id", -1),
    "refund": ("users", "buyer_id", 1),
    "credit": ("users", "seller_id", 1),
}
_FIELD = {"listings": "stock_level", "users": "balance"}


def name(effect):
    """``debit.<attempt>`` -> ``debit``."""
    return effect.split(".", 1)[0]


def targets(order, effect):
    """(collection, [(document id, amount)]) that an effect changes."""
    coll, what, _ = EFFECTS[name(effect)]
    if what == "lines":
        return coll, [(listing_id(order["store_id"], i["book_id"]), i["count"])
                      for i in order["items"]]
    return coll, [(order[what], order["total_price"])]


def apply(db, order, effect):
    """Apply a non-failing effect once (restore, refund, credit)."""
    coll, changes = targets(order, effect)
    k = key(order, effect)
    sign = EFFECTS[name(effect)][2]
    ops = [UpdateOne({"_id": doc_id, "ops": {"$ne": k}},
                     {"$inc": {_FIELD[coll]: sign * amount}, "$push": {"ops": k}})
           for doc_id, amount in changes]
    db[coll].bulk_write(ops, ordered=False)


def unmark(db, order, effect):
    """Remove an effect's markers once the order no longer needs them."""
    coll, changes = targets(order, effect)
    k = key(order, effect)
    ops = [UpdateOne({"_id": doc_id, "ops": k}, {"$pull": {"ops": k}}) for doc_id, _ in changes]
    db[coll].bulk_write(ops, ordered=False)


def undo(db, order, effect):
    """Take back whatever part of a failable effect (reserve, debit) was applied:
    each target that carries the marker gets its amount back and loses the marker."""
    coll, changes = targets(order, effect)
    k = key(order, effect)
    sign = -EFFECTS[name(effect)][2]
    ops = [UpdateOne({"_id": doc_id, "ops": k},
                     {"$inc": {_FIELD[coll]: sign * amount}, "$pull": {"ops": k}})
           for doc_id, amount in changes]
    db[coll].bulk_write(ops, ordered=False)


def run(db, order, todo):
    """Carry out a todo list: plain effects apply, "~effect" entries unmark."""
    for entry in todo:
        if entry.startswith("~"):
            unmark(db, order, entry[1:])
        else:
            apply(db, order, entry)
