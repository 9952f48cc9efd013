"""The order lifecycle as data: its states, and one table of the actions that move
an order between them.

Everything that needs the rules reads them here: the model's transitions
(``be.model.orders``), the refusals (520 for a state that forbids the action, 521
for a payment after its window, 503 for an order busy with another step), the
invariant audit's legal transitions and owed effects (``be.audit``), the timer
handlers (``be.watcher``) and the state table in ``doc/api.md``, which a test
compares with ``markdown_table()``. Adding an action is a row here, one handler in
``be.model.orders`` and its route (``doc/design.md``, "Adding an action").

Each action names:
  leaves   the states it may leave, each with the effects the order then owes on
           other documents (be.model.effects: stock back, refund, credit...);
  enters   the state it enters, and ``stamp``, the order field set to that moment;
  by       who may take it: the order's buyer, its seller, or the system (a timer);
  sets / clears  the timer (a ``pending`` document) it starts or retires;
  record / event fields it sets on the order / adds to the history entry;
  route    how doc/api.md names it; ``path``: the HTTP call for an action that
           needs nothing but the order (``POST path`` with ``user_id`` and
           ``order_id``, served from this table by be/api/orders.py). ``place``
           and ``pay`` carry more (lines, a password) and have their own views.
"""
from dataclasses import dataclass, field

STATES = ("unpaid", "paid", "shipped", "received", "cancelled")
PARTIES = ("buyer", "seller", "system")


@dataclass(frozen=True)
class Timer:
    """A deadline: the order field holding it, the setting that gives its length
    in seconds, the action it takes when it falls due, and the sweep's count of
    the orders it changed."""
    kind: str
    deadline: str
    setting: str
    fires: str
    window: str
    counted: str

    def pending_id(self, order_id):
        """The ``pending`` document's id: one timer of each kind per order."""
        return f"{self.kind}:{order_id}"


@dataclass(frozen=True)
class Action:
    name: str
    by: str
    leaves: dict
    enters: str
    stamp: str
    sets: str = None
    clears: str = None
    record: dict = field(default_factory=dict)
    event: dict = field(default_factory=dict)
    route: str = ""
    path: str = None

    def owes(self, state):
        """The effects the order owes when this action takes it out of ``state``."""
        return list(self.leaves[state])


TIMERS = {t.kind: t for t in (
    Timer("pay", "pay_deadline", "pay_timeout_s", fires="expire", window="payment window",
          counted="expired"),
    Timer("receive", "receive_deadline", "receive_timeout_s", fires="auto_receive",
          window="receive window", counted="received"),
)}

ACTIONS = {a.name: a for a in (
    Action("place", "buyer", {None: ("reserve",)}, "unpaid", "created_at", sets="pay",
           route="`new_order`"),
    Action("pay", "buyer", {"unpaid": ("debit",)}, "paid", "paid_at", clears="pay",
           route="`payment`"),
    Action("cancel", "buyer", {"unpaid": ("restore",), "paid": ("restore", "refund")},
           "cancelled", "cancelled_at", clears="pay", record={"cancel_reason": "buyer"},
           event={"reason": "buyer"}, route="`cancel_order` (reason `buyer`)",
           path="/buyer/cancel_order"),
    Action("expire", "system", {"unpaid": ("restore",)}, "cancelled", "cancelled_at",
           clears="pay", record={"cancel_reason": "timeout"}, event={"reason": "timeout"},
           route="the pay timeout (reason `timeout`)"),
    Action("ship", "seller", {"paid": ()}, "shipped", "shipped_at", sets="receive",
           route="`ship` (seller)", path="/seller/ship"),
    Action("receive", "buyer", {"shipped": ("credit",)}, "received", "received_at",
           clears="receive", event={"by": "buyer"}, route="`receive` (buyer)",
           path="/buyer/receive"),
    Action("auto_receive", "system", {"shipped": ("credit",)}, "received", "received_at",
           clears="receive", event={"by": "timeout"},
           route="the receive timeout (history `\"by\": \"timeout\"`)"),
)}

# What each effect does, in the words of doc/api.md (the mechanics: be.model.effects).
EFFECT_TEXT = {
    "reserve": "stock of every line reserved (all lines or none)",
    "debit": "`total_price` moves from the buyer into the order (escrow)",
    "restore": "stock given back",
    "refund": "buyer refunded `total_price`",
    "credit": "the seller is credited `total_price`",
}

# ------------------------------------------------------------ derived views

FIRST_STATE = ACTIONS["place"].enters


def transitions():
    """state -> the states an action may take it to (the audit's legal moves)."""
    out = {s: [] for s in STATES}
    for a in ACTIONS.values():
        for state in a.leaves:
            if state is not None and a.enters not in out[state]:
                out[state].append(a.enters)
    return {s: tuple(v) for s, v in out.items()}


def stamps():
    """state -> the order field stamped when the order enters it."""
    return {a.enters: a.stamp for a in ACTIONS.values() if a.enters != FIRST_STATE}


def effect_states():
    """effect -> the states in which an order may still owe it (its todo or markers):
    the state entered by the action that owes it."""
    out = {}
    for a in ACTIONS.values():
        for owed in a.leaves.values():
            for effect in owed:
                if a.enters not in out.setdefault(effect, ()):
                    out[effect] += (a.enters,)
    return out


def values(attr, key, state):
    """The values an action entering ``state`` records under ``key`` in its ``attr``
    ("record" or "event"): e.g. the legal cancel reasons."""
    return tuple(getattr(a, attr)[key] for a in ACTIONS.values()
                 if a.enters == state and key in getattr(a, attr))


def by_timer(kind):
    """The action a timer of ``kind`` takes, or None for an unknown kind."""
    timer = TIMERS.get(kind)
    return ACTIONS[timer.fires] if timer else None


def mermaid():
    """The state diagram of doc/api.md (Mermaid), edge for edge from ACTIONS."""
    lines = ["stateDiagram-v2"]
    for a in ACTIONS.values():
        label = a.route.replace("`", "").split(" (")[0]
        for state in a.leaves:
            lines.append(f"    {state or '[*]'} --> {a.enters}: {label}")
    return "\n".join(lines)


def markdown_table():
    """The state table of doc/api.md, row for row from ACTIONS."""
    rows = ["| from | to | by | effect on money and stock |", "|---|---|---|---|"]
    for a in ACTIONS.values():
        for state in a.leaves:
            said = [EFFECT_TEXT[e] for e in a.owes(state)]
            if a.sets:
                said.append(f"starts the {TIMERS[a.sets].window}")
            rows.append(f"| {state or '—'} | {a.enters} | {a.route} | {', '.join(said)} |")
    return "\n".join(rows)
