"""Orders: one document each, lines embedded, ``state`` guarded on every change.

The states and the actions between them are the table in ``be.model.lifecycle``;
this module carries them out. Every state change is one ``find_one_and_update``
whose filter names the state it leaves (and ``busy: None``), so of two racing
requests exactly one wins. Callers pass an authenticated user id (the HTTP edge
resolved the token); the table says whether that user is the order's buyer or
seller.

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

from be import errors, metrics
from be.clock import iso
from be.db import listing_id
from be.model import effects, paging, stores, users
from be.model.lifecycle import ACTIONS, TIMERS

AFTER = ReturnDocument.AFTER


def _nonce():
    return uuid.uuid4().hex


def _light():
    """Projection for writes whose reply needs no lines or history (a fresh dict each
    time: the embedded engine adds to projections it is given)."""
    return {"items": 0, "history": 0}


def _deadline(ctx, timer, now):
    return now + timedelta(seconds=getattr(ctx.settings, TIMERS[timer].setting))


def _set_timer(ctx, kind, order_id, due_at):
    ctx.db.pending.update_one(
        {"_id": TIMERS[kind].pending_id(order_id)},
        {"$set": {"order_id": order_id, "kind": kind, "due_at": due_at}}, upsert=True)


def _clear_timer(ctx, kind, order_id):
    ctx.db.pending.delete_one({"_id": TIMERS[kind].pending_id(order_id)})


# ---------------------------------------------------------------- reading

def _load(ctx, order_id):
    order = ctx.db.orders.find_one({"_id": order_id})
    if order is None:
        raise errors.NoSuchOrder(order_id)
    return order


def _refuse(order, action):
    """The error for an action that the order's current state forbids."""
    if order.get("busy"):
        if order["busy"]["step"] == "pay" and action == "pay":
            raise errors.BadOrderState(order["_id"], "being paid", "it can be paid once")
        raise errors.Busy(order["_id"])
    if action == "pay" and order.get("cancel_reason") == "timeout":
        raise errors.OrderExpired(order["_id"])
    raise errors.BadOrderState(order["_id"], order["state"], f"cannot {action} it")


def _party(order, user_id, action):
    """401 unless ``user_id`` is the party the table lets take ``action``."""
    if order[f"{ACTIONS[action].by}_id"] != user_id:
        raise errors.AuthorizationFailed()


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


def get_order(ctx, user_id, order_id):
    order = _load(ctx, order_id)
    if user_id not in (order["buyer_id"], order["seller_id"]):
        raise errors.AuthorizationFailed()
    return reply(order)


_NEWEST_FIRST = [("created_at", -1), ("_id", -1)]


def _window(page, page_size, after):
    """Check the paging parameters (400 before anything is looked up) and turn the
    cursor into the clauses that start the page right after its row: a range on
    ``created_at`` that the list's index bounds, and the row's own millisecond
    only past its ``_id``. None without a cursor."""
    paging.check(page, page_size, after)
    if after is None:
        return None
    ms, order_id = paging.decode("orders", after, int, str)
    created_at = paging.from_millis(ms)
    return {"created_at": {"$lte": created_at},
            "$or": [{"created_at": {"$lt": created_at}}, {"_id": {"$lt": order_id}}]}


def _cursor(row):
    return paging.encode("orders", paging.millis(row["created_at"]), row["_id"])


def _page(ctx, query, page, page_size, after, window):
    """One page of a list of orders, newest first (see be.model.paging)."""
    rows = list(ctx.db.orders.find(
        query if window is None else dict(query, **window), sort=_NEWEST_FIRST,
        skip=paging.skip(page, page_size, after), limit=page_size + 1))
    result = paging.finish(rows, page_size, _cursor, paging.count(ctx.db.orders, query))
    return result._replace(rows=[reply(o) for o in result.rows])


def buyer_orders(ctx, user_id, state, page, page_size, after=None):
    """The buyer's orders (in ``state``, if given), newest first: a paging.Page."""
    window = _window(page, page_size, after)
    query = {"buyer_id": user_id}
    if state:
        query["state"] = state
    return _page(ctx, query, page, page_size, after, window)


def seller_orders(ctx, user_id, store_id, state, page, page_size, after=None):
    """The orders of one of the seller's stores, or of all of them: a paging.Page."""
    window = _window(page, page_size, after)
    if store_id is not None:
        stores.owned_store(ctx, user_id, store_id)
        query = {"store_id": store_id}
    else:
        query = {"seller_id": user_id}
    if state:
        query["state"] = state
    return _page(ctx, query, page, page_size, after, window)


# ---------------------------------------------------------------- changing

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


def _take(ctx, name, order_id, state, guard=None):
    """Carry out the table's action ``name`` on an order in ``state``: one atomic
    update moves it (recording the effects it owes), then the effects, then the
    timers. The updated order, or None if the order was no longer in ``state``
    (or ``guard`` no longer held): another request won."""
    action = ACTIONS[name]
    now = ctx.clock.now()
    changes = {"state": action.enters, "updated_at": now, action.stamp: now, **action.record}
    if action.sets:
        changes[TIMERS[action.sets].deadline] = _deadline(ctx, action.sets, now)
    todo = action.owes(state)
    if todo:
        changes["busy"] = {"step": "effects", "owner": _nonce(), "since": now, "todo": todo}
    done = ctx.db.orders.find_one_and_update(
        {"_id": order_id, "busy": None, "state": state, **(guard or {})},
        {"$set": changes, "$push": {"history": {"state": action.enters, "at": now,
                                                **action.event}}},
        return_document=AFTER)
    if done is None:
        return None
    metrics.TRANSITIONS.labels(name).inc()
    _finish(ctx, done)
    if action.clears:
        _clear_timer(ctx, action.clears, order_id)
    if action.sets:
        _set_timer(ctx, action.sets, order_id, changes[TIMERS[action.sets].deadline])
    return done


def act(ctx, name, user_id, order_id):
    """A buyer's or seller's action from the table (cancel, ship, receive...):
    401 unless ``user_id`` is the party it belongs to, 520 if the order's state
    forbids it, 503 while another step works on the order."""
    order = _load(ctx, order_id)
    _party(order, user_id, name)
    if order["state"] not in ACTIONS[name].leaves or order.get("busy"):
        _refuse(order, name)
    if _take(ctx, name, order_id, order["state"]) is None:
        _refuse(_load(ctx, order_id), name)


def cancel_order(ctx, user_id, order_id):
    """The buyer cancels an unpaid order (stock back) or a paid, unshipped one
    (stock back and a refund)."""
    act(ctx, "cancel", user_id, order_id)


def ship(ctx, user_id, order_id):
    """The seller ships a paid order; the receive window starts."""
    act(ctx, "ship", user_id, order_id)


def receive(ctx, user_id, order_id):
    """The buyer confirms receipt; the seller is credited with the total."""
    act(ctx, "receive", user_id, order_id)


def fire(ctx, kind, order_id):
    """A timer of ``kind`` fell due: take its action if the order is still in the
    state it leaves and past the deadline. Idempotent; True only for the call that
    changed the order."""
    timer = TIMERS[kind]
    action = ACTIONS[timer.fires]
    now = ctx.clock.now()
    guard = {timer.deadline: {"$lte": now}}
    for state in action.leaves:
        done = _take(ctx, action.name, order_id, state, guard)
        if done is not None:
            metrics.TIMERS_FIRED.labels(kind).inc()
            metrics.TIMER_LATENESS.labels(kind).observe(
                (now - done[timer.deadline]).total_seconds())
            return True
    return False


def expire_payment(ctx, order_id):
    """Pay-deadline handler: cancel the order if it is still unpaid and overdue."""
    return fire(ctx, "pay", order_id)


def auto_receive(ctx, order_id):
    """Receive-deadline handler: mark a still-shipped, overdue order received and
    pay the seller."""
    return fire(ctx, "receive", order_id)


def _merge_lines(lines):
    counts = {}
    for book_id, count in lines:
        counts[book_id] = counts.get(book_id, 0) + count
    return list(counts.items())


def new_order(ctx, user_id, store_id, lines):
    """Reserve stock for every line or for none, and record an unpaid order
    (action ``place``). ``lines`` is a list of (book_id, count) with count >= 1."""
    place = ACTIONS["place"]
    store = ctx.db.stores.find_one({"_id": store_id}, {"owner_id": 1})
    if store is None:
        raise errors.NoSuchStore(store_id)
    lines = _merge_lines(lines)
    found = {doc["book_id"]: doc for doc in ctx.db.listings.find(
        {"_id": {"$in": [listing_id(store_id, b) for b, _ in lines]}},
        {"book_id": 1, "price": 1, "stock_level": 1, "on_sale": 1})}
    for book_id, count in lines:
        if book_id not in found or not found[book_id]["on_sale"]:
            raise errors.NoSuchBook(book_id)  # an unlisted book is no book to order
    for book_id, count in lines:
        if found[book_id]["stock_level"] < count:
            raise errors.StockTooLow(book_id)
    items = [{"book_id": b, "count": c, "price": found[b]["price"]} for b, c in lines]
    total = sum(i["count"] * i["price"] for i in items)
    if total > users.MAX_BALANCE:  # and so inside int64, which MongoDB stores
        raise errors.BadRequest(
            f"invalid field 'books': the order would total {total} cents, over the "
            f"{users.MAX_BALANCE} that any balance can hold; order fewer copies")
    now = ctx.clock.now()
    owner = _nonce()
    timer = TIMERS[place.sets]
    order = {
        "_id": uuid.uuid4().hex, "buyer_id": user_id, "store_id": store_id,
        "seller_id": store["owner_id"], "state": place.enters, "items": items,
        "total_price": total,
        place.stamp: now, "updated_at": now,
        timer.deadline: _deadline(ctx, place.sets, now),
        "history": [{"state": place.enters, "at": now}],
        "busy": {"step": "reserve", "owner": owner, "since": now},
    }
    oid = order["_id"]
    ctx.db.orders.insert_one(order)
    k = effects.key(order, "reserve")
    result = ctx.db.listings.bulk_write([
        UpdateOne({"_id": listing_id(store_id, i["book_id"]), "stock_level": {"$gte": i["count"]},
                   "on_sale": True, "ops": {"$ne": k}},
                  {"$inc": {"stock_level": -i["count"]}, "$push": {"ops": k}})
        for i in items], ordered=False)
    if result.modified_count != len(items):
        effects.undo(ctx.db, order, "reserve")
        ctx.db.orders.delete_one({"_id": oid, "busy.owner": owner})
        _short_line(ctx, store_id, items)
    reserved = ctx.db.orders.find_one_and_update(
        {"_id": oid, "busy.owner": owner},
        {"$set": {"busy": {"step": "effects", "owner": owner, "since": now,
                           "todo": ["~" + e for e in place.owes(None)]}}},
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
    ctx.db.pending.insert_one({"_id": timer.pending_id(oid), "order_id": oid,
                               "kind": timer.kind, "due_at": order[timer.deadline]})
    metrics.TRANSITIONS.labels(place.name).inc()
    return oid


def _short_line(ctx, store_id, items):
    """Raise the error of the first line a reservation could not take (after a
    lost race): 515 if its listing went off sale, else 517 for a short one."""
    docs = {d["book_id"]: d for d in ctx.db.listings.find(
        {"_id": {"$in": [listing_id(store_id, i["book_id"]) for i in items]}},
        {"book_id": 1, "stock_level": 1, "on_sale": 1})}
    for i in items:
        if not docs.get(i["book_id"], {}).get("on_sale"):
            raise errors.NoSuchBook(i["book_id"])
    for i in items:
        if docs[i["book_id"]]["stock_level"] < i["count"]:
            raise errors.StockTooLow(i["book_id"])
    raise errors.StockTooLow(items[0]["book_id"])


def payment(ctx, user_id, order_id):
    """Move the order's total from the buyer into the order (escrow; action ``pay``).
    The caller has checked the buyer's password. The claim's guard checks buyer,
    state and deadline at once; the order is read only when the claim fails, to
    say why."""
    pay = ACTIONS["pay"]
    (leaves,) = pay.leaves
    now = ctx.clock.now()
    attempt = _nonce()
    claimed = ctx.db.orders.find_one_and_update(
        {"_id": order_id, "buyer_id": user_id, "state": leaves, "busy": None,
         TIMERS[pay.clears].deadline: {"$gt": now}},
        {"$set": {"busy": {"step": "pay", "owner": attempt, "attempt": attempt, "since": now}}},
        projection=_light(), return_document=AFTER)
    if claimed is None:
        current = _load(ctx, order_id)
        _party(current, user_id, "pay")
        if current["state"] == leaves and not current.get("busy"):
            if current[TIMERS[pay.clears].deadline] <= now:
                fire(ctx, pay.clears, order_id)
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
    _clear_timer(ctx, pay.clears, order_id)


def _complete_payment(ctx, order, owner, attempt, now):
    """Mark the claimed order paid (by its payment, or by recovery finishing it);
    None if ``owner`` no longer holds it."""
    pay = ACTIONS["pay"]
    paid = ctx.db.orders.find_one_and_update(
        {"_id": order["_id"], "busy.owner": owner},
        {"$set": {"state": pay.enters, pay.stamp: now, "updated_at": now,
                  "payment_attempt": attempt,
                  "busy": {"step": "effects", "owner": owner, "since": now,
                           "todo": [f"~debit.{attempt}"]}},
         "$push": {"history": {"state": pay.enters, "at": now}}},
        projection=_light(), return_document=AFTER)  # its debit marker needs no lines
    if paid is not None:
        metrics.TRANSITIONS.labels(pay.name).inc()
    return paid


# ---------------------------------------------------------------- recovery

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
                _clear_timer(ctx, ACTIONS["pay"].clears, order["_id"])
            return "paid"
        ctx.db.orders.update_one({"_id": order["_id"], "busy.owner": owner},
                                 {"$unset": {"busy": ""}})
        return "released"
    _finish(ctx, claimed)
    return "finished"
