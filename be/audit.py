"""The invariant audit: does the database add up?

``audit(db)`` reads users, stores, listings and orders and returns a list of
``Violation`` (empty when everything holds). The tests run it on the embedded
engine after every crash point and stress run; ``bookstore-audit`` (be.audit_cli,
``python -m scripts.check_invariants``) runs it against a real MongoDB.

Money (integer cents). Every user's ledger must balance:

    deposited - withdrawn - debited + refunded + credited == balance

where, per order (see be.model.effects for the markers ``<order_id>:<effect>``):
  * debited (buyer)   the order was paid (``paid`` in its history), or it is busy in
                      step ``pay`` and the buyer carries ``<id>:debit.<attempt>``;
  * refunded (buyer)  the order was cancelled after payment, unless its ``busy.todo``
                      still lists ``refund`` and the buyer lacks the refund marker;
  * credited (seller) the order was received, unless its ``busy.todo`` still lists
                      ``credit`` and the seller lacks the credit marker.
Summed over users this is "what was added minus what was withdrawn equals all
balances plus the money held by orders" (held = debited - refunded - credited).

Stock. For every listing: stock_added == stock_level + held, where an order holds
each line's count while it is not cancelled (an order busy in step ``reserve`` only
on the listings that carry its reserve marker), and a cancelled order still holds
it while its todo lists ``restore`` and the listing lacks the restore marker.

Catalogue. Every listing shows a whole description of its own book: ``desc``
names a stored description whose ``book_id`` is the listing's and whose ``_id``
is the hash of what it says (so it was never changed after it was written), and
every picture it names is stored under the hash of its bytes. Descriptions and
pictures no listing reaches (left by crashes and updates) are counted by
``summary``, not violations. Each listing has a boolean ``on_sale`` and a price
in whole cents.

Orders: one legal state, a history that starts ``unpaid`` and follows legal
transitions, the step timestamps matching the history and never going backwards,
a ``busy`` step that fits the state, totals that add up, and no order both refunded
and paid out. Markers: every marker belongs to a busy order whose step owes it,
on the document that step changes; anything else is a leftover (money or stock
applied with nobody left to account for it). ``settled=True`` (after recovery)
also requires that no order is busy.

A live database in the middle of requests can show a step half done; run the
audit on a quiet database (or again) before believing a marker violation.
"""
import json
from dataclasses import dataclass, field
from datetime import datetime

from be.db import listing_id as _listing_id
from be.model import catalogue, effects, lifecycle
from be.model.lifecycle import STATES

# The rules come from the lifecycle table (be.model.lifecycle), so the audit checks
# what the model does and the two cannot drift apart.
TRANSITIONS = lifecycle.transitions()
STEP_FIELD = lifecycle.stamps()
EFFECT_STATE = lifecycle.effect_states()
CANCEL_REASONS = lifecycle.values("event", "reason", "cancelled")
RECEIVED_BY = lifecycle.values("event", "by", "received")
MAX_DOCS = 20  # documents quoted per violation


@dataclass
class Violation:
    kind: str
    description: str
    documents: list = field(default_factory=list)

    def __str__(self):
        return f"[{self.kind}] {self.description}"

    def render(self):
        """The description followed by each document as JSON."""
        lines = [str(self)]
        for doc in self.documents:
            lines.append("    " + json.dumps(doc, default=_json_default, ensure_ascii=False,
                                            sort_keys=True))
        return "\n".join(lines)


def _json_default(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _before(a, b):
    """a < b, for two datetimes; False when either is missing."""
    return isinstance(a, datetime) and isinstance(b, datetime) and a < b


def _brief(desc):
    """A description fit for printing: no search terms, long texts cut."""
    return {k: (v[:80] + "…" if isinstance(v, str) and len(v) > 80 else v)
            for k, v in desc.items() if k != "terms"}


def _public(doc, hide=("password_hash",)):
    """A copy fit for printing: no password hash, pictures' bytes summarised."""
    return {k: v for k, v in doc.items() if k not in hide}


class _Audit:
    def __init__(self, db, settled):
        self.db = db
        self.settled = settled
        self.out = []
        self.users = {u["_id"]: u for u in db.users.find({})}
        self.stores = {s["_id"]: s for s in db.stores.find({})}
        self.listings = {doc["_id"]: doc for doc in db.listings.find({})}
        self.orders = {o["_id"]: o for o in db.orders.find({})}
        # marker text -> [(collection, document id)]
        self.markers = {}
        for coll, docs in (("users", self.users), ("listings", self.listings)):
            for doc in docs.values():
                ops = doc.get("ops") or []
                if not isinstance(ops, list):
                    self.add("marker", f"{coll} {doc['_id']!r}: ops is not a list", [doc])
                    continue
                for marker in ops:
                    if ops.count(marker) > 1:
                        self.add("marker", f"{coll} {doc['_id']!r} carries {marker!r} twice", [doc])
                    self.markers.setdefault(marker, []).append((coll, doc["_id"]))

    def add(self, kind, description, docs=()):
        docs = [_public(d) for d in docs if d is not None]
        if len(docs) > MAX_DOCS:
            extra = len(docs) - MAX_DOCS
            docs = docs[:MAX_DOCS] + [{"...": f"{extra} more documents"}]
        self.out.append(Violation(kind, description, docs))

    def has_marker(self, coll, doc_id, marker):
        doc = (self.users if coll == "users" else self.listings).get(doc_id)
        return doc is not None and marker in (doc.get("ops") or [])

    # ------------------------------------------------------------ orders

    def todo(self, order):
        busy = order.get("busy")
        if not isinstance(busy, dict) or busy.get("step") != "effects":
            return []
        return list(busy.get("todo") or [])

    def pending_effect(self, order, effect, coll, doc_id):
        """True if the order still owes ``effect`` on that document: the todo lists
        it plain and the document lacks the marker (not applied yet)."""
        return (effect in self.todo(order)
                and not self.has_marker(coll, doc_id, f"{order['_id']}:{effect}"))

    def check_order(self, order):
        oid = order["_id"]
        state = order.get("state")
        if state not in STATES:
            self.add("order-state", f"order {oid!r} has unknown state {state!r}", [order])
            return False
        ok = True
        items = order.get("items")
        if not isinstance(items, list) or not items:
            self.add("order-items", f"order {oid!r} has no items", [order])
            return False
        books = [i.get("book_id") for i in items]
        if len(set(books)) != len(books):
            self.add("order-items", f"order {oid!r} lists a book twice", [order])
        total = 0
        for item in items:
            count, price = item.get("count"), item.get("price")
            if not (_is_int(count) and count >= 1 and _is_int(price) and price >= 0):
                self.add("order-items", f"order {oid!r}: line {item!r} needs an integer count "
                         ">= 1 and integer price >= 0 (cents)", [order])
                return False
            total += count * price
            lid = _listing_id(order.get("store_id"), item.get("book_id"))
            if lid not in self.listings:
                self.add("order-items", f"order {oid!r}: no listing {lid} for its line", [order])
                ok = False
        if not _is_int(order.get("total_price")) or order["total_price"] != total:
            self.add("order-total", f"order {oid!r}: total_price {order.get('total_price')!r} "
                     f"is not the sum of its lines ({total})", [order])
            ok = False
        for role in ("buyer_id", "seller_id"):
            if order.get(role) not in self.users:
                self.add("order-party", f"order {oid!r}: {role} {order.get(role)!r} is no user",
                         [order])
                ok = False
        store = self.stores.get(order.get("store_id"))
        if store is None:
            self.add("order-party", f"order {oid!r}: no store {order.get('store_id')!r}", [order])
        elif store.get("owner_id") != order.get("seller_id"):
            self.add("order-party", f"order {oid!r}: seller_id is not the store's owner",
                     [order, store])
        self.check_history(order)
        self.check_busy(order)
        return ok

    def check_history(self, order):
        oid, state = order["_id"], order["state"]
        history = order.get("history")
        if not isinstance(history, list) or not history:
            self.add("order-history", f"order {oid!r} has no history", [order])
            return
        states = [h.get("state") for h in history]
        if states[0] != lifecycle.FIRST_STATE:
            self.add("order-history", f"order {oid!r}: history starts at {states[0]!r}", [order])
        for a, b in zip(states, states[1:]):
            if b not in TRANSITIONS.get(a, ()):
                self.add("order-history", f"order {oid!r}: illegal transition {a!r} -> {b!r} "
                         f"in history {states}", [order])
        if states[-1] != state:
            self.add("order-history", f"order {oid!r}: state {state!r} but history ends at "
                     f"{states[-1]!r}", [order])
        times = [h.get("at") for h in history]
        if not all(isinstance(t, datetime) for t in times):
            self.add("order-time", f"order {oid!r}: a history entry has no time", [order])
            return
        if any(b < a for a, b in zip(times, times[1:])):
            self.add("order-time", f"order {oid!r}: history times go backwards", [order])
        created = order.get("created_at")
        if created != times[0]:
            self.add("order-time", f"order {oid!r}: created_at is not the first history time",
                     [order])
        if not isinstance(order.get("pay_deadline"), datetime) or (
                isinstance(created, datetime) and order["pay_deadline"] <= created):
            self.add("order-time", f"order {oid!r}: pay_deadline missing or not after "
                     "created_at", [order])
        for step, name in STEP_FIELD.items():
            entries = [h for h in history if h.get("state") == step]
            if len(entries) > 1:
                self.add("order-history", f"order {oid!r} entered {step!r} twice", [order])
            if entries and order.get(name) != entries[0]["at"]:
                self.add("order-time", f"order {oid!r}: {name} does not match its history "
                         "entry", [order])
            if not entries and order.get(name) is not None:
                self.add("order-time", f"order {oid!r}: {name} set but the order never was "
                         f"{step}", [order])
        paid = "paid" in states
        if paid != (order.get("payment_attempt") is not None):
            self.add("order-history", f"order {oid!r}: payment_attempt does not match whether "
                     "it was paid", [order])
        if state == "cancelled":
            reason = history[-1].get("reason")
            if reason not in CANCEL_REASONS or order.get("cancel_reason") != reason:
                self.add("order-history", f"order {oid!r}: bad cancel reason {reason!r} / "
                         f"{order.get('cancel_reason')!r}", [order])
            if reason == "timeout":
                if paid:
                    self.add("order-history", f"order {oid!r}: a paid order was cancelled by "
                             "the pay timeout", [order])
                if _before(order.get("cancelled_at"), order.get("pay_deadline")):
                    self.add("order-time", f"order {oid!r}: timed out before its pay_deadline",
                             [order])
        elif order.get("cancel_reason") is not None:
            self.add("order-history", f"order {oid!r}: cancel_reason on a {state} order", [order])
        if "shipped" in states:
            deadline = order.get("receive_deadline")
            if not isinstance(deadline, datetime) or not _before(order.get("shipped_at"), deadline):
                self.add("order-time", f"order {oid!r}: receive_deadline missing or not after "
                         "shipped_at", [order])
        if state == "received":
            by = history[-1].get("by")
            if by not in RECEIVED_BY:
                self.add("order-history", f"order {oid!r}: received by {by!r}", [order])
            if by == "timeout" and _before(order.get("received_at"), order.get("receive_deadline")):
                self.add("order-time", f"order {oid!r}: received by timeout before its "
                         "receive_deadline", [order])

    def check_busy(self, order):
        oid, state = order["_id"], order["state"]
        busy = order.get("busy")
        if busy is None:
            return
        if self.settled:
            self.add("busy", f"order {oid!r} is still busy ({busy.get('step')!r}) after "
                     "recovery", [order])
        if not isinstance(busy, dict) or not busy.get("owner") or not isinstance(
                busy.get("since"), datetime):
            self.add("busy", f"order {oid!r}: malformed busy {busy!r}", [order])
            return
        step = busy.get("step")
        if step == "reserve":
            if state != "unpaid" or len(order.get("history") or []) != 1:
                self.add("busy", f"order {oid!r}: step reserve on a {state} order", [order])
        elif step == "pay":
            if state != "unpaid" or not busy.get("attempt"):
                self.add("busy", f"order {oid!r}: step pay on a {state} order or without "
                         "attempt", [order])
        elif step == "effects":
            todo = busy.get("todo")
            if not isinstance(todo, list) or not todo:
                self.add("busy", f"order {oid!r}: step effects with todo {todo!r}", [order])
                return
            for entry in todo:
                effect = entry.lstrip("~")
                name = effect.split(".", 1)[0]
                if name not in EFFECT_STATE or state not in EFFECT_STATE[name]:
                    self.add("busy", f"order {oid!r}: todo {entry!r} on a {state} order", [order])
                elif name == "debit" and effect != f"debit.{order.get('payment_attempt')}":
                    self.add("busy", f"order {oid!r}: todo {entry!r} is not its payment attempt",
                             [order])
                elif name in ("reserve", "debit") and not entry.startswith("~"):
                    self.add("busy", f"order {oid!r}: todo applies {effect!r}, which only the "
                             "request itself may apply", [order])
                elif name == "refund" and "paid" not in [h.get("state") for h in order["history"]]:
                    self.add("busy", f"order {oid!r}: refund owed on an order never paid",
                             [order])
            owed = {e.lstrip("~") for e in todo}
            if "refund" in owed and "credit" in owed:
                self.add("refund-and-credit", f"order {oid!r} owes both a refund and a credit",
                         [order])
        else:
            self.add("busy", f"order {oid!r}: unknown step {step!r}", [order])

    # ------------------------------------------------------------ markers

    def justified(self, order, effect):
        """Is ``<order>:<effect>`` a marker that the order's current step accounts for?"""
        busy = order.get("busy")
        if not isinstance(busy, dict):
            return False
        step = busy.get("step")
        if step == "reserve":
            return effect == "reserve"
        if step == "pay":
            return effect == f"debit.{busy.get('attempt')}"
        if step == "effects":
            return effect in self.todo(order) or "~" + effect in self.todo(order)
        return False

    def expected_target(self, order, effect):
        if effects.name(effect) not in effects.EFFECTS:
            return None, set()
        coll, changes = effects.targets(order, effect)
        return coll, {doc_id for doc_id, _ in changes}

    def check_markers(self):
        for marker, places in sorted(self.markers.items()):
            oid, sep, effect = str(marker).partition(":")
            docs = [(self.users if c == "users" else self.listings)[d] for c, d in places]
            order = self.orders.get(oid)
            if not sep or order is None:
                self.add("leftover-marker", f"marker {marker!r} names no existing order: its "
                         "change is applied with no order accounting for it", docs)
                continue
            if not self.justified(order, effect):
                self.add("leftover-marker", f"marker {marker!r} is left over: order {oid!r} "
                         f"({order.get('state')}, busy={bool(order.get('busy'))}) owes no such "
                         "step", [order] + docs)
            coll, targets = self.expected_target(order, effect)
            wrong = [(c, d) for c, d in places if c != coll or d not in targets]
            if wrong:
                self.add("marker", f"marker {marker!r} sits on {wrong}, not on what the effect "
                         "changes", [order] + docs)
        for oid, order in self.orders.items():
            if (self.has_marker("users", order.get("buyer_id"), f"{oid}:refund")
                    and self.has_marker("users", order.get("seller_id"), f"{oid}:credit")):
                self.add("refund-and-credit", f"order {oid!r} was both refunded and paid out",
                         [order])

    # ------------------------------------------------------------ money

    def money_moves(self, order):
        """(debited from the buyer, refunded to the buyer, credited to the seller)."""
        oid, total = order["_id"], order["total_price"]
        states = [h.get("state") for h in order.get("history") or []]
        busy = order.get("busy") if isinstance(order.get("busy"), dict) else {}
        debited = 0
        if "paid" in states:
            debited = total
        elif busy.get("step") == "pay" and self.has_marker(
                "users", order["buyer_id"], f"{oid}:debit.{busy.get('attempt')}"):
            debited = total
        refunded = credited = 0
        if order["state"] == "cancelled" and "paid" in states and not self.pending_effect(
                order, "refund", "users", order["buyer_id"]):
            refunded = total
        if order["state"] == "received" and not self.pending_effect(
                order, "credit", "users", order["seller_id"]):
            credited = total
        return debited, refunded, credited

    def check_money(self, good_orders):
        net = {uid: 0 for uid in self.users}
        related = {uid: [] for uid in self.users}
        held = 0
        for order in good_orders:
            debited, refunded, credited = self.money_moves(order)
            buyer, seller = order["buyer_id"], order["seller_id"]
            net[buyer] += refunded - debited
            net[seller] += credited
            held += debited - refunded - credited
            if debited or refunded:
                related[buyer].append(order)
            if credited:
                related[seller].append(order)
        added = balances = 0
        for uid, user in self.users.items():
            fields = {k: user.get(k) for k in ("balance", "deposited", "withdrawn")}
            bad = [k for k, v in fields.items() if not _is_int(v) or v < 0]
            if bad:
                self.add("money", f"user {uid!r}: {', '.join(bad)} not a non-negative integer "
                         "(cents)", [user])
                continue
            added += fields["deposited"] - fields["withdrawn"]
            balances += fields["balance"]
            expected = fields["deposited"] - fields["withdrawn"] + net[uid]
            if expected != fields["balance"]:
                self.add("money", f"user {uid!r}: balance {fields['balance']} but deposits, "
                         f"withdrawals and orders give {expected} (off by "
                         f"{fields['balance'] - expected})", [user] + related[uid])
        if added != balances + held:
            self.add("money-total", f"money not conserved: added - withdrawn = {added}, "
                     f"balances {balances} + held by orders {held} = {balances + held}")
        return {"added": added, "balances": balances, "held": held}

    # ------------------------------------------------------------ stock

    def check_stock(self, good_orders):
        held = {lid: 0 for lid in self.listings}
        related = {lid: [] for lid in self.listings}
        for order in good_orders:
            oid = order["_id"]
            busy = order.get("busy") if isinstance(order.get("busy"), dict) else {}
            for item in order["items"]:
                lid = _listing_id(order["store_id"], item["book_id"])
                if lid not in held:
                    continue
                if busy.get("step") == "reserve":
                    holds = self.has_marker("listings", lid, f"{oid}:reserve")
                elif order["state"] == "cancelled":
                    holds = self.pending_effect(order, "restore", "listings", lid)
                else:
                    holds = True
                if holds:
                    held[lid] += item["count"]
                related[lid].append(order)
        for lid, listing in self.listings.items():
            level, added = listing.get("stock_level"), listing.get("stock_added")
            if not (_is_int(level) and _is_int(added)) or level < 0 or added < 0:
                self.add("stock", f"listing {lid}: stock_level {level!r} / stock_added {added!r} "
                         "not non-negative integers", [listing])
                continue
            if listing.get("store_id") not in self.stores:
                self.add("stock", f"listing {lid}: no store {listing.get('store_id')!r}",
                         [listing])
            if added != level + held[lid]:
                self.add("stock", f"listing {lid}: stock_added {added} but stock_level {level} + "
                         f"held by orders {held[lid]} = {level + held[lid]}",
                         [listing] + [o for o in related[lid]])

    # ------------------------------------------------------------ catalogue

    def check_catalogue(self):
        wanted = {doc.get("desc") for doc in self.listings.values()} - {None}
        descs = {d["_id"]: d for d in self.db.descriptions.find({"_id": {"$in": sorted(wanted)}})}
        pictures = {p for d in descs.values() for p in d.get("pictures") or []}
        stored = {p["_id"]: p for p in self.db.pictures.find({"_id": {"$in": sorted(pictures)}})}
        for lid, listing in self.listings.items():
            price = listing.get("price")
            if not isinstance(listing.get("on_sale"), bool) or not _is_int(price) or price < 0:
                self.add("catalogue", f"listing {lid}: on_sale {listing.get('on_sale')!r} / "
                         f"price {price!r} not a boolean / non-negative integer", [listing])
            desc = descs.get(listing.get("desc"))
            if desc is None:
                hint = "" if "desc" in listing else (
                    " (a listing from before issue 12: run python -m scripts.migrate_catalogue)")
                self.add("catalogue", f"listing {lid}: its description "
                         f"{listing.get('desc')!r} is not stored{hint}", [listing])
                continue
            if desc.get("book_id") != listing.get("book_id"):
                self.add("catalogue", f"listing {lid}: shows a description of book "
                         f"{desc.get('book_id')!r}", [listing, _brief(desc)])
            if catalogue.description_id(desc) != desc["_id"]:
                self.add("catalogue", f"description {desc['_id']}: what it says does not "
                         "hash to its id (changed after it was written)", [listing, _brief(desc)])
            for n, pid in enumerate(desc.get("pictures") or []):
                pic = stored.get(pid)
                if pic is None or catalogue.picture_id(bytes(pic["data"])) != pid:
                    self.add("catalogue", f"listing {lid}: picture {n} ({pid}) is "
                             + ("not stored" if pic is None else "not what its id says"),
                             [listing, _brief(desc)])

    def run(self):
        good = [o for o in self.orders.values() if self.check_order(o)]
        self.check_markers()
        self.totals = self.check_money(good)
        self.check_stock(good)
        self.check_catalogue()
        return self.out


def audit(db, settled=False):
    """Every invariant violation in ``db`` (a pymongo or embedded database); [] if clean.
    ``settled``: recovery has run, so no order may still be busy."""
    return _Audit(db, settled).run()


def summary(db):
    """Counts for a report: users, listings, orders per state, money totals."""
    a = _Audit(db, False)
    violations = a.run()
    per_state = {}
    for o in a.orders.values():
        per_state[o.get("state")] = per_state.get(o.get("state"), 0) + 1
    return {"users": len(a.users), "listings": len(a.listings), "orders": per_state,
            "busy": sum(1 for o in a.orders.values() if o.get("busy")),
            "money": a.totals, "violations": len(violations),
            "unreferenced": unreferenced(db)}


def unreferenced(db):
    """{"descriptions": n, "pictures": n} that no listing reaches: what crashes and
    updates left behind (harmless: no read reaches them; they only take space)."""
    used = {doc.get("desc") for doc in db.listings.find({}, {"desc": 1})}
    descs = {d["_id"]: d.get("pictures") or [] for d in db.descriptions.find({}, {"pictures": 1})}
    seen = {p for d, pics in descs.items() if d in used for p in pics}
    pictures = [p["_id"] for p in db.pictures.find({}, {"_id": 1})]
    return {"descriptions": sum(1 for d in descs if d not in used),
            "pictures": sum(1 for p in pictures if p not in seen)}
