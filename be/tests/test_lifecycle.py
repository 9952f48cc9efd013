"""The lifecycle table is the order lifecycle: the model does what each row says
(from every state, by every party), the audit accepts exactly that, and the docs
show the table as it is."""
import pathlib

import pytest

from be import audit, errors
from be.model import effects, lifecycle, orders
from be.model.lifecycle import ACTIONS, STATES, TIMERS

ROOT = pathlib.Path(__file__).resolve().parents[2]

# The model call for each action a person takes: (ctx, user_id, order_id).
CALLS = {"pay": orders.payment, "cancel": orders.cancel_order,
         "ship": orders.ship, "receive": orders.receive}
# How a test brings an order into each state (the path from the table's first state).
PATH = {"unpaid": [], "paid": ["pay"], "shipped": ["pay", "ship"],
        "received": ["pay", "ship", "receive"], "cancelled": ["cancel"]}


@pytest.fixture
def world(ctx, make_user, shop):
    buyer, _, _ = make_user("buyer", funds=100_000)
    parties = {"buyer": buyer, "seller": shop["seller"]}

    def order_in(state):
        oid = orders.new_order(ctx, buyer, shop["store_id"], [("b1", 2), ("b2", 1)])
        for name in PATH[state]:
            CALLS[name](ctx, parties[ACTIONS[name].by], oid)
        assert ctx.db.orders.find_one({"_id": oid})["state"] == state
        return oid
    return parties, order_in


def timers(ctx, oid):
    return {d["kind"] for d in ctx.db.pending.find({"order_id": oid})}


def check_entered(ctx, action, oid, before):
    order = ctx.db.orders.find_one({"_id": oid})
    assert order["state"] == action.enters
    assert order[action.stamp] == order["history"][-1]["at"]
    assert order["history"][-1] == {"state": action.enters, "at": order[action.stamp],
                                    **action.event}
    assert all(order[k] == v for k, v in action.record.items())
    kinds = timers(ctx, oid)
    if action.sets:
        assert action.sets in kinds and order[TIMERS[action.sets].deadline] is not None
    if action.clears:
        assert action.clears not in kinds
    assert not order.get("busy")  # every owed effect applied and unmarked
    assert audit.audit(ctx.db, settled=True) == []
    assert len(order["history"]) == len(before["history"]) + 1


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("name", sorted(CALLS))
def test_people_take_each_action_exactly_from_the_states_it_leaves(ctx, world, name, state):
    parties, order_in = world
    action = ACTIONS[name]
    oid = order_in(state)
    before = ctx.db.orders.find_one({"_id": oid})
    if state in action.leaves:
        CALLS[name](ctx, parties[action.by], oid)
        check_entered(ctx, action, oid, before)
    else:
        with pytest.raises(errors.BadOrderState) as exc:
            CALLS[name](ctx, parties[action.by], oid)
        assert exc.value.code == 520 and f"cannot {name} it" in exc.value.message
        assert ctx.db.orders.find_one({"_id": oid}) == before


@pytest.mark.parametrize("name", sorted(CALLS))
def test_only_the_party_the_table_names_may_act(ctx, world, make_user, name):
    parties, order_in = world
    action = ACTIONS[name]
    oid = order_in(next(s for s in action.leaves))
    before = ctx.db.orders.find_one({"_id": oid})
    stranger, _, _ = make_user("stranger")
    for who in [u for p, u in parties.items() if p != action.by] + [stranger]:
        with pytest.raises(errors.AuthorizationFailed):
            CALLS[name](ctx, who, oid)
    assert ctx.db.orders.find_one({"_id": oid}) == before


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("kind", sorted(TIMERS))
def test_each_timer_takes_its_action_only_from_the_states_it_leaves(ctx, world, kind, state):
    _, order_in = world
    action = ACTIONS[TIMERS[kind].fires]
    oid = order_in(state)
    before = ctx.db.orders.find_one({"_id": oid})
    assert orders.fire(ctx, kind, oid) is False  # not due yet: nothing happens
    ctx.clock.advance(max(getattr(ctx.settings, t.setting) for t in TIMERS.values()) + 1)
    changed = orders.fire(ctx, kind, oid)
    assert changed is (state in action.leaves)
    if changed:
        check_entered(ctx, action, oid, before)
        assert orders.fire(ctx, kind, oid) is False  # idempotent
    else:
        assert ctx.db.orders.find_one({"_id": oid}) == before


def test_the_table_is_consistent():
    for action in ACTIONS.values():
        assert action.by in lifecycle.PARTIES
        assert action.enters in STATES
        assert set(action.leaves) <= set(STATES) | {None}
        for owed in action.leaves.values():
            assert set(owed) <= set(effects.EFFECTS), action.name
        for timer in (action.sets, action.clears):
            assert timer is None or timer in TIMERS
    for timer in TIMERS.values():
        assert ACTIONS[timer.fires].by == "system"
    owed = {e for a in ACTIONS.values() for o in a.leaves.values() for e in o}
    assert owed == set(effects.EFFECTS)  # no effect without an action that owes it
    assert [a for a in ACTIONS.values() if None in a.leaves] == [ACTIONS["place"]]


def test_the_audit_reads_the_table():
    assert audit.TRANSITIONS == lifecycle.transitions()
    assert audit.TRANSITIONS["shipped"] == ("received",)
    assert audit.EFFECT_STATE["refund"] == ("cancelled",)


def test_doc_api_shows_the_table_as_it_is():
    text = (ROOT / "doc" / "api.md").read_text(encoding="utf-8")
    assert f"```mermaid\n{lifecycle.mermaid()}\n```" in text
    assert lifecycle.markdown_table() in text


def test_the_openapi_document_lists_the_tables_states():
    import yaml
    spec = yaml.safe_load((ROOT / "doc" / "openapi.yaml").read_text(encoding="utf-8"))
    enums = []

    def walk(node):
        if isinstance(node, dict):
            if "unpaid" in (node.get("enum") or []):
                enums.append([s for s in node["enum"] if s])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(spec)
    assert len(enums) == 2 and all(e == list(STATES) for e in enums)
