"""Orders: one document each, lines embedded, ``state`` guarded on every change.

States: unpaid -> paid -> shipped -> received; unpaid -> cancelled; paid -> cancelled.
Every state change is one ``find_one_and_update`` whose filter names the state it
leaves (and ``busy: None``), so of two racing requests exactly one wins.

``busy`` marks a step in flight that touches other documents; it names an owner
(the request, or the recovery that took over) and when it started. A step whose
owner died is finished or undone by ``recover`` once it is ``stuck_after_s`` old:
    reserve  new_order is taking stock; recovery gives it back and drops the order
    pay      payment is charging the buyer; recovery looks for the charge marker
             and completes the payment, or releases the order unpaid
    effects  the order owes refunds, stock or seller credit (see be.model.effects)
"""
import uuid
from datetime import timedelta

from pymongo import ReturnDocument, UpdateOne

from be import errors
from be.clock import iso
from be.db import listing_id
from be.model import effects, stores, users

STATES = ("unpaid", "paid", "shipped", "received", "cancelled")
AFTER = ReturnDocument.AFTER


def _nonce():
    return uuid.uuid4().hex


def _light():
    """Projection for writes whose reply needs no lines or history (a fresh dict each
    time: the embedded engine adds to projections it is given)."""
    return {"items": 0, "history": 0}


def _pay_timer(order_id):
    return f"pay:{order_id}"


def _receive_timer(order_id):
    return f"receive:{order_id}"


# ---------------------------------------------------------------- reading

def _load(ctx, order_id):
    order = ctx.db.orders.find_one({"_id": order_id})
    if order is None:
        raise errors.NoSuchOrder(order_id)
    return order


def _refuse(order, action):
    """The error for a transition that the order's current state forbids."""
    if order.get("busy"):
        if order["busy"]["step"] == "pay" and action == "pay":
            raise errors.BadOrderState(order["_id"], "being paid", "it can be paid once")
        raise errors.Busy(order["_id"])
    if action == "pay" and order.get("cancel_reason") == "timeout":
        raise errors.OrderExpired(order["_id"])
    raise errors.BadOrderState(order["_id"], order["state"], f"cannot {action} it")


def reply(order):
    """The public shape of an order."""
    return {
        "order_id": order["_id"],
        "buyer_id": order["buyer_id"],
        "store_id": order["store_id"],
        "state": order["state"],
        "items": [{"book_id": i["book_id"], "count": i["count"], "price": i["price"]}
                  for i in order["items"]],
        "total_price": order["total_price"],
        "created_at": iso(order["created_at"]),
        "pay_deadline": iso(order.get("pay_deadline")),
        "paid_at": iso(order.get("paid_at")),
        "shipped_at": iso(order.get("shipped_at")),
        "receive_deadline": iso(order.get("receive_deadline")),
        "received_at": iso(order.get("received_at")),
        "cancelled_at": iso(order.get("cancelled_at")),
        "cancel_reason": order.get("cancel_reason"),
        "history": [dict(h, at=iso(h["at"])) for h in order.get("history", [])],
    }


def get_order(ctx, user_id, token, order_id):
    users.authenticate(ctx, user_id, token)
    order = _load(ctx, order_id)
    if user_id not in (order["buyer_id"], order["seller_id"]):
        raise errors.AuthorizationFailed()
    return reply(order)


def state_filter(state):
    """A list's state filter: None for all, else one of STATES (400 otherwise)."""
    if state in (None, ""):
        return None
    if state not in STATES:
        raise errors.BadRequest(f"invalid field 'state': must be one of {', '.join(STATES)}")
    return state


def _page(ctx, query, page, page_size):
    rows = ctx.db.orders.find(query, sort=[("created_at", -1), ("_id", -1)],
                              skip=(page - 1) * page_size, limit=page_size)
    return [reply(o) for o in rows], ctx.db.orders.count_documents(query)


def buyer_orders(ctx, user_id, token, state, page, page_size):
    users.authenticate(ctx, user_id, token)
    query = {"buyer_id": user_id}
    if state:
        query["state"] = state
    return _page(ctx, query, page, page_size)


def seller_orders(ctx, user_id, token, store_id, state, page, page_size):
    users.authenticate(ctx, user_id, token)
    if store_id is not None:
        stores.owned_store(ctx, user_id, store_id)
        query = {"store_id": store_id}
    else:
        query = {"seller_id": user_id}
    if state:
        query["state"] = state
    return _page(ctx, query, page, page_size)


# ---------------------------------------------------------------- changing

def _transition(ctx, order_id, guard, state, now, fields=None, todo=None, event=None):
    """Move an order from the state in ``guard`` to ``state`` in one atomic update;
    None if the guard no longer holds. ``todo`` records the effects it owes."""
    changes = {"state": state, "updated_at": now, **(fields or {})}
    if todo:
        changes["busy"] = {"step": "effects", "owner": _nonce(), "since": now, "todo": todo}
    entry = {"state": state, "at": now, **(event or {})}
    return ctx.db.orders.find_one_and_update(
        {"_id": order_id, "busy": None, **guard},
        {"$set": changes, "$push": {"history": entry}}, return_document=AFTER)


def _finish(ctx, order):
    """Apply what a busy order owes, then its marker removals, then clear busy.
    Each write is guarded by the owner, so a step taken over by recovery stops:
    False then. The effects' targets (lines, buyer, seller, total) never change,
    so ``order`` as read before serves every step."""
    busy = order.get("busy")
    if not busy or busy["step"] != "effects":
        return True
    guard = {"_id": order["_id"], "busy.owner": busy["owner"]}
    todo = busy["todo"]
    plain = [e for e in todo if not e.startswith("~")]
    if plain:
        effects.run(ctx.db, order, plain)
        todo = ["~" + e for e in plain] + [e for e in todo if e.startswith("~")]
        if ctx.db.orders.update_one(guard, {"$set": {"busy.todo": todo}}).matched_count != 1:
            return False
    effects.run(ctx.db, order, todo)
    return ctx.db.orders.update_one(guard, {"$unset": {"busy": ""}}).matched_count == 1


def _merge_lines(lines):
    counts = {}
    for book_id, count in lines:
        counts[book_id] = counts.get(book_id, 0) + count
    return list(counts.items())


def new_order(ctx, user_id, token, store_id, lines):
    """Reserve stock for every line or for none, and record an unpaid order.
    ``lines`` is a list of (book_id, count) with count >= 1."""
    users.authenticate(ctx, user_id, token)
    store = ctx.db.stores.find_one({"_id": store_id}, {"owner_id": 1})
    if store is None:
        raise errors.NoSuchStore(store_id)
    lines = _merge_lines(lines)
    found = {doc["book_id"]: doc for doc in ctx.db.listings.find(
        {"_id": {"$in": [listing_id(store_id, b) for b, _ in lines]}},
        {"book_id": 1, "price": 1, "stock_level": 1})}
    for book_id, count in lines:
        if book_id not in found:
            raise errors.NoSuchBook(book_id)
    for book_id, count in lines:
        if found[book_id]["stock_level"] < count:
            raise errors.StockTooLow(book_id)
    items = [{"book_id": b, "count": c, "price": found[b]["price"]} for b, c in lines]
    now = ctx.clock.now()
    owner = _nonce()
    order = {
        "_id": uuid.uuid4().hex, "buyer_id": user_id, "store_id": store_id,
        "seller_id": store["owner_id"], "state": "unpaid", "items": items,
        "total_price": sum(i["count"] * i["price"] for i in items),
        "created_at": now, "updated_at": now,
        "pay_deadline": now + timedelta(seconds=ctx.settings.pay_timeout_s),
        "history": [{"state": "unpaid", "at": now}],
        "busy": {"step": "reserve", "owner": owner, "since": now},
    }
    oid = order["_id"]
    ctx.db.orders.insert_one(order)
    k = effects.key(order, "reserve")
    result = ctx.db.listings.bulk_write([
        UpdateOne({"_id": listing_id(store_id, i["book_id"]), "stock_level": {"$gte": i["count"]},
                   "ops": {"$ne": k}},
                  {"$inc": {"stock_level": -i["count"]}, "$push": {"ops": k}})
        for i in items], ordered=False)
    if result.modified_count != len(items):
        effects.undo(ctx.db, order, "reserve")
        ctx.db.orders.delete_one({"_id": oid, "busy.owner": owner})
        short = _short_line(ctx, store_id, items)
        raise errors.StockTooLow(short)
    reserved = ctx.db.orders.find_one_and_update(
        {"_id": oid, "busy.owner": owner},
        {"$set": {"busy": {"step": "effects", "owner": owner, "since": now,
                           "todo": ["~reserve"]}}},
        projection=_light(), return_document=AFTER)  # the lines are ours already
    if reserved is None:
        # Our lease ran out before the reservation was recorded: recovery has dropped
        # (or is dropping) the order, possibly before our bulk above landed. Give back
        # what we reserved; undo moves only marked stock, so it never gives twice.
        effects.undo(ctx.db, order, "reserve")
        raise errors.Busy(oid)
    if not _finish(ctx, dict(reserved, items=items)):
        raise errors.Busy(oid)  # our lease ran out; recovery has taken the order over
    # a fresh order id: its timer cannot exist yet (an insert, not an upsert)
    ctx.db.pending.insert_one({"_id": _pay_timer(oid), "order_id": oid, "kind": "pay",
                               "due_at": order["pay_deadline"]})
    return oid


def _short_line(ctx, store_id, items):
    """The first line whose listing cannot cover it (after a lost race for stock)."""
    docs = {d["book_id"]: d["stock_level"] for d in ctx.db.listings.find(
        {"_id": {"$in": [listing_id(store_id, i["book_id"]) for i in items]}},
        {"book_id": 1, "stock_level": 1})}
    for i in items:
        if docs.get(i["book_id"], 0) < i["count"]:
            return i["book_id"]
    return items[0]["book_id"]


def payment(ctx, user_id, order_id, password):
    """Move the order's total from the buyer into the order (escrow).
    The claim's guard checks buyer, state and deadline at once; the order is read
    only when the claim fails, to say why."""
    users.check_password(ctx, user_id, password)
    now = ctx.clock.now()
    attempt = _nonce()
    claimed = ctx.db.orders.find_one_and_update(
        {"_id": order_id, "buyer_id": user_id, "state": "unpaid", "busy": None,
         "pay_deadline": {"$gt": now}},
        {"$set": {"busy": {"step": "pay", "owner": attempt, "attempt": attempt, "since": now}}},
        projection=_light(), return_document=AFTER)
    if claimed is None:
        current = _load(ctx, order_id)
        if current["buyer_id"] != user_id:
            raise errors.AuthorizationFailed()
        if current["state"] == "unpaid" and not current.get("busy"):
            if current["pay_deadline"] <= now:
                expire_payment(ctx, order_id)
            raise errors.OrderExpired(order_id)
        _refuse(current, "pay")
    debit = f"debit.{attempt}"
    k = effects.key(claimed, debit)
    charged = ctx.db.users.update_one(
        {"_id": user_id, "balance": {"$gte": claimed["total_price"]}, "ops": {"$ne": k}},
        {"$inc": {"balance": -claimed["total_price"]}, "$push": {"ops": k}})
    if charged.modified_count != 1:
        ctx.db.orders.update_one({"_id": order_id, "busy.owner": attempt}, {"$unset": {"busy": ""}})
        raise errors.FundsTooLow(order_id)
    paid = _complete_payment(ctx, claimed, attempt, attempt, now)
    if paid is None:  # our lease ran out and recovery decided for us
        current = _load(ctx, order_id)
        if current.get("payment_attempt") == attempt:
            return
        effects.undo(ctx.db, claimed, debit)
        raise errors.Busy(order_id)
    _finish(ctx, paid)
    ctx.db.pending.delete_one({"_id": _pay_timer(order_id)})


def _complete_payment(ctx, order, owner, attempt, now):
    return ctx.db.orders.find_one_and_update(
        {"_id": order["_id"], "busy.owner": owner},
        {"$set": {"state": "paid", "paid_at": now, "updated_at": now, "payment_attempt": attempt,
                  "busy": {"step": "effects", "owner": owner, "since": now,
                           "todo": [f"~debit.{attempt}"]}},
         "$push": {"history": {"state": "paid", "at": now}}},
        projection=_light(), return_document=AFTER)  # its debit marker needs no lines


def cancel_order(ctx, user_id, token, order_id):
    """The buyer cancels an unpaid order (stock back) or a paid, unshipped one
    (stock back and a refund)."""
    users.authenticate(ctx, user_id, token)
    order = _load(ctx, order_id)
    if order["buyer_id"] != user_id:
        raise errors.AuthorizationFailed()
    owed = {"unpaid": ["restore"], "paid": ["restore", "refund"]}.get(order["state"])
    if owed is None or order.get("busy"):
        _refuse(order, "cancel")
    if not _cancel(ctx, order, "buyer", owed):
        _refuse(_load(ctx, order_id), "cancel")


def _cancel(ctx, order, reason, owed, guard=None):
    now = ctx.clock.now()
    done = _transition(ctx, order["_id"], {"state": order["state"], **(guard or {})}, "cancelled",
                       now, {"cancelled_at": now, "cancel_reason": reason}, todo=owed,
                       event={"reason": reason})
    if done is None:
        return False
    _finish(ctx, done)
    ctx.db.pending.delete_one({"_id": _pay_timer(order["_id"])})
    return True


def ship(ctx, user_id, token, order_id):
    users.authenticate(ctx, user_id, token)
    order = _load(ctx, order_id)
    if order["seller_id"] != user_id:
        raise errors.AuthorizationFailed()
    if order["state"] != "paid" or order.get("busy"):
        _refuse(order, "ship")
    now = ctx.clock.now()
    deadline = now + timedelta(seconds=ctx.settings.receive_timeout_s)
    done = _transition(ctx, order_id, {"state": "paid"}, "shipped", now,
                       {"shipped_at": now, "receive_deadline": deadline})
    if done is None:
        _refuse(_load(ctx, order_id), "ship")
    ctx.db.pending.update_one(
        {"_id": _receive_timer(order_id)},
        {"$set": {"order_id": order_id, "kind": "receive", "due_at": deadline}}, upsert=True)


def receive(ctx, user_id, token, order_id):
    """The buyer confirms receipt; the seller is credited with the total."""
    users.authenticate(ctx, user_id, token)
    order = _load(ctx, order_id)
    if order["buyer_id"] != user_id:
        raise errors.AuthorizationFailed()
    if order["state"] != "shipped" or order.get("busy"):
        _refuse(order, "receive")
    if not _receive(ctx, order_id, "buyer"):
        _refuse(_load(ctx, order_id), "receive")


def _receive(ctx, order_id, by, guard=None):
    now = ctx.clock.now()
    done = _transition(ctx, order_id, {"state": "shipped", **(guard or {})}, "received", now,
                       {"received_at": now}, todo=["credit"], event={"by": by})
    if done is None:
        return False
    _finish(ctx, done)
    ctx.db.pending.delete_one({"_id": _receive_timer(order_id)})
    return True


# ---------------------------------------------------------------- timers and recovery

def expire_payment(ctx, order_id):
    """Pay-deadline handler: cancel the order if it is still unpaid and overdue.
    Idempotent; True only for the call that cancelled it."""
    now = ctx.clock.now()
    return _cancel(ctx, {"_id": order_id, "state": "unpaid"}, "timeout", ["restore"],
                   guard={"pay_deadline": {"$lte": now}})


def auto_receive(ctx, order_id):
    """Receive-deadline handler: mark a still-shipped, overdue order received and
    pay the seller. Idempotent; True only for the call that received it."""
    now = ctx.clock.now()
    return _receive(ctx, order_id, "timeout", guard={"receive_deadline": {"$lte": now}})


def recover(ctx, order):
    """Finish or undo the step that a dead request left on ``order`` (see module doc).
    Claims the order first, so two sweeps never work on one order at once."""
    busy = order["busy"]
    now = ctx.clock.now()
    owner = _nonce()
    claimed = ctx.db.orders.find_one_and_update(
        {"_id": order["_id"], "busy.owner": busy["owner"]},
        {"$set": {"busy.owner": owner, "busy.since": now}}, return_document=AFTER)
    if claimed is None:
        return None
    step = busy["step"]
    if step == "reserve":
        effects.undo(ctx.db, claimed, "reserve")
        ctx.db.orders.delete_one({"_id": order["_id"], "busy.owner": owner})
        return "dropped"
    if step == "pay":
        attempt = busy["attempt"]
        k = effects.key(claimed, f"debit.{attempt}")
        if ctx.db.users.find_one({"_id": claimed["buyer_id"], "ops": k}, {"_id": 1}):
            paid = _complete_payment(ctx, claimed, owner, attempt, now)
            if paid is not None:
                _finish(ctx, paid)
                ctx.db.pending.delete_one({"_id": _pay_timer(order["_id"])})
            return "paid"
        ctx.db.orders.update_one({"_id": order["_id"], "busy.owner": owner},
                                 {"$unset": {"busy": ""}})
        return "released"
    _finish(ctx, claimed)
    return "finished"
