"""Every query the application issues is served by an index in be.db.INDEXES.

The embedded engine scans, so it cannot tell; ``be.tests.support.querycheck``
models the MongoDB planner over the declared indexes. Three layers:

* the checker itself, on shapes it must accept and shapes it must refuse;
* a workload through every model function (and the sweep, recovery and
  search), whose recorded shapes must all be served;
* the whole test suite: this module installs a process-wide recorder when it is
  collected, and at the end of the session every shape that application code
  issued in any test must be served (a failure lists the shapes and the lines
  that issue them).
"""
import pytest

from be import embedded, errors
from be.db import INDEXES
from be.model import orders, sessions, stores, users
from be.tests.conftest import new_id
from be.tests.support import querycheck
from be.tests.support.querycheck import Recorder, check

pytestmark = pytest.mark.embedded_only  # the query recorder observes the embedded engine's calls

ASC, DESC = 1, -1


# ---------------------------------------------------------------- the checker

ORDERS = INDEXES["orders"]


@pytest.mark.parametrize("collection, flt, sort, method", [
    ("orders", {"_id": "o1"}, None, "find_one"),
    ("orders", {"_id": "o1", "busy": None, "state": "unpaid", "pay_deadline": {"$gt": 1}},
     None, "find_one_and_update"),
    ("listings", {"_id": {"$in": ["a", "b"]}}, None, "find"),
    ("users", {"_id": "u", "ops": {"$ne": "k"}, "balance": {"$gte": 5}}, None, "UpdateOne"),
    ("orders", {"buyer_id": "u"}, [("created_at", DESC), ("_id", DESC)], "find"),
    ("orders", {"buyer_id": "u"}, [("created_at", ASC), ("_id", ASC)], "find"),  # all reversed
    ("orders", {"buyer_id": "u", "state": "paid"}, [("created_at", DESC), ("_id", DESC)], "find"),
    ("orders", {"seller_id": "s", "state": "paid"}, None, "count_documents"),
    ("orders", {"store_id": "s"}, None, "count_documents"),
    ("orders", {"state": "unpaid", "pay_deadline": {"$lte": 1}, "busy": None},
     [("pay_deadline", ASC)], "find"),
    ("orders", {"busy.since": {"$lt": 1}}, [("busy.since", ASC)], "find"),  # sparse, range
    ("listings", {"store_id": "s"}, [("store_id", ASC), ("book_id", ASC)], "find"),  # pinned key
    ("listings", {"store_id": "s", "book_id": {"$in": ["a", "b"]}}, None, "find"),
    ("listings", {"book_id": "b"}, [("store_id", ASC)], "find"),
    ("listings", {"desc": {"$in": ["d1", "d2"]}, "on_sale": True}, None, "find"),
    ("listings", {"desc": {"$in": ["d1", "d2"]}, "on_sale": True, "store_id": "s"}, None, "find"),
    ("sessions", {"user_id": "u"}, None, "delete_many"),
    ("orders", {"$or": [{"buyer_id": "u"}, {"seller_id": "u"}]}, None, "find"),
    ("orders", {"$or": [{"buyer_id": "u"}, {"seller_id": "u"}]},
     [("created_at", DESC), ("_id", DESC)], "find"),
    ("orders", {"$and": [{"buyer_id": "u"}, {"state": "paid"}]}, None, "find"),
])
def test_checker_accepts_served_shapes(collection, flt, sort, method):
    verdict = check(collection, flt, sort, method)
    assert verdict.covered, verdict.reason


@pytest.mark.parametrize("collection, flt, sort, method, why", [
    ("orders", {}, None, "find", "leading key"),
    ("orders", {"state": "paid"}, [("created_at", DESC)], "find", "sort"),
    ("orders", {"created_at": {"$gt": 1}}, None, "find", "leading key"),
    ("orders", {"buyer_id": "u"}, [("created_at", DESC), ("_id", ASC)], "find", "directions"),
    ("orders", {"buyer_id": "u"}, [("total_price", DESC)], "find", "sort"),
    ("orders", {"buyer_id": {"$gt": "a"}}, [("created_at", DESC)], "find", "sort"),
    ("orders", {"busy": None}, None, "find", "leading key"),
    ("orders", {"busy.since": None}, None, "find", "not bounded"),  # null can't use sparse
    ("orders", {"busy.since": {"$exists": False}}, None, "count_documents", "not bounded"),
    ("users", {"balance": {"$gte": 1}}, None, "update_many", "leading key"),
    ("descriptions", {"title": "x"}, None, "find", "leading key"),
    ("listings", {"on_sale": True}, None, "find", "leading key"),
    ("orders", {"$or": [{"buyer_id": "u"}, {"total_price": 3}]}, None, "find", "$or branch"),
    ("orders", {"$or": [{"buyer_id": "u"}, {"seller_id": "u"}]}, [("total_price", ASC)], "find",
     "$or branch"),
    ("listings", {"$text": {"$search": "x"}}, None, "find", "text"),
])
def test_checker_refuses_unserved_shapes(collection, flt, sort, method, why):
    verdict = check(collection, flt, sort, method)
    assert not verdict.covered
    assert why in verdict.reason


def test_checker_models_sparse_multikey_in_and_residuals():
    sparse = {"t": [([("d.x", ASC)], {"sparse": True})]}
    assert check("t", {"d.x": {"$lt": 5}}, None, "find", sparse).covered
    assert check("t", {"d.x": 3}, None, "find", sparse).covered
    assert not check("t", {"d.x": {"$in": [3, None]}}, None, "find", sparse).covered
    assert not check("t", {"d.x": {"$ne": 3}}, None, "find", sparse).covered
    # $in on a prefix key counts as equality; before a sort it is a merge, noted
    idx = {"t": [([("a", ASC), ("b", DESC)], {})]}
    v = check("t", {"a": {"$in": [1, 2]}}, [("b", DESC)], "find", idx)
    assert v.covered and any("SORT_MERGE" in n for n in v.notes)
    # sorting on a key pinned by equality is free; on a key only ranged, not
    assert check("t", {"a": 1, "b": 2}, [("a", ASC), ("b", ASC)], "find", idx).covered
    assert not check("t", {"a": {"$gt": 1}}, [("b", DESC)], "find", idx).covered
    # count ignores the sort
    assert check("t", {"a": {"$gt": 1}}, [("b", DESC)], "count_documents", idx).covered
    # multikey (array) fields bound like any other: $all and $in on the leading key
    terms = {"books": [([("terms", ASC)], {})]}
    v = check("books", {"terms": {"$in": ["x", "y"]}, "$and": [{"terms": {"$all": ["z"]}}],
                        "listed": True}, None, "find", terms)
    assert v.covered and v.residual == ["listed"]
    # the index with fewer residual predicates is the one reported
    v = check("orders", {"buyer_id": "u", "state": "paid"}, [("created_at", DESC)], "find")
    assert v.index[:2] == (("buyer_id", ASC), ("state", ASC)) and not v.residual
    # hashed and text indexes
    assert check("t", {"h": 1}, None, "find", {"t": [([("h", "hashed")], {})]}).covered
    assert not check("t", {"h": {"$gt": 1}}, None, "find", {"t": [([("h", "hashed")], {})]}).covered
    assert check("t", {"$text": {"$search": "x"}}, None, "find",
                 {"t": [([("body", "text")], {})]}).covered


def test_shapes_of_calls():
    from pymongo import InsertOne, UpdateOne
    shapes = querycheck.shapes_of_call("listings", "bulk_write", (
        [UpdateOne({"_id": "a", "n": {"$gte": 1}}, {"$inc": {"n": -1}}), InsertOne({"x": 1})],),
        {"ordered": False})
    assert shapes == [querycheck.Shape("listings", "UpdateOne",
                                       (("_id", ("eq",)), ("n", ("range",))), ())]
    (shape,) = querycheck.shapes_of_call("orders", "find", ({"a": {"$in": [1, None]}},),
                                         {"sort": [("b", -1)], "limit": 3})
    assert shape.filter == (("a", ("in+null",)),) and shape.sort == (("b", -1),)
    (shape,) = querycheck.shapes_of_call("orders", "find_one", ("o1",), {})
    assert shape.filter == (("_id", ("eq",)),)
    assert querycheck.shapes_of_call("orders", "insert_one", ({"_id": 1},), {}) == []


def test_recorder_keeps_application_queries_only(ctx, make_user):
    rec = Recorder()
    embedded.OBSERVERS.append(rec)
    try:
        uid, _, token = make_user()                       # application code
        ctx.db.orders.find({"total_price": {"$gt": 0}})   # the test's own query
        sessions.authenticate(ctx, uid, token)
    finally:
        embedded.OBSERVERS.remove(rec)
    sites = {s for sites in rec.shapes.values() for s in sites}
    assert sites and all(s.startswith(("be/model/users.py:", "be/model/sessions.py:",
                                       "be/model/throttle.py:"))
                         for s in sites)
    assert not rec.uncovered()
    # and an unserved one is reported with where it comes from
    rec.shapes[querycheck.Shape("orders", "find", (("total_price", ("range",)),), ())] = {"x.py:1"}
    (bad,) = rec.uncovered()
    assert bad[2] == ["x.py:1"] and "leading key" in bad[1].reason


# ---------------------------------------------------------------- a workload through every model function

def _workload(ctx, make_user):
    from be.tests.support.faults import crash_at

    seller, _, stoken = make_user("seller")
    buyer, bpw, btoken = make_user("buyer", funds=10**7)
    store = new_id("store")
    stores.create_store(ctx, seller, store)
    for i in range(3):
        info = {"id": f"wb{i}", "title": f"三体 Dune {i}", "author": "刘慈欣", "price": 100 + i,
                "tags": ["科幻"], "book_intro": "a long introduction " * 5}
        if i == 0:
            info["pictures"] = ["iVBORw0KGgo="]
        stores.add_book(ctx, seller, store, info, 50)
    with pytest.raises(errors.BookExists):
        stores.add_book(ctx, seller, store, {"id": "wb0", "title": "x"}, 1)
    stores.add_stock_level(ctx, seller, store, "wb1", 5)
    with pytest.raises(errors.NoSuchBook):
        stores.add_stock_level(ctx, seller, store, "nope", 5)
    first = stores.store_books(ctx, seller, store, 1, 1)
    stores.store_books(ctx, seller, store, 1, 1, first.next)  # the page after a cursor
    # bulk import: add_books (a new book with a picture, one already listed), ids by cursor
    stores.add_books(ctx, seller, store, [
        ({"id": "wb9", "title": "批量 bulk", "pictures": ["iVBORw0KGgo="]}, 3),
        ({"id": "wb0", "title": "x"}, 1)])
    ids, after = stores.store_book_ids(ctx, seller, store, 2)
    stores.store_book_ids(ctx, seller, store, 2, after)
    # managing listings (issue 12)
    stores.update_book(ctx, seller, store, {"id": "wb2", "title": "三体 Dune 2 新版", "price": 105})
    stores.set_price(ctx, seller, store, "wb2", 102)
    stores.set_stock_level(ctx, seller, store, "wb2", 40)
    stores.unlist_book(ctx, seller, store, "wb2")
    with pytest.raises(errors.NoSuchBook):
        orders.new_order(ctx, buyer, store, [("wb2", 1)])
    stores.relist_book(ctx, seller, store, "wb2")
    with pytest.raises(errors.NoSuchBook):
        stores.set_price(ctx, seller, store, "nope", 1)

    lines = [("wb0", 1), ("wb1", 2)]
    paid = orders.new_order(ctx, buyer, store, lines)
    orders.payment(ctx, buyer, paid)
    orders.ship(ctx, seller, paid)
    orders.receive(ctx, buyer, paid)
    cancelled = orders.new_order(ctx, buyer, store, lines)
    orders.cancel_order(ctx, buyer, cancelled)
    refunded = orders.new_order(ctx, buyer, store, lines)
    orders.payment(ctx, buyer, refunded)
    orders.cancel_order(ctx, buyer, refunded)
    with pytest.raises(errors.StockTooLow):
        orders.new_order(ctx, buyer, store, [("wb2", 10**6)])
    orders.get_order(ctx, buyer, paid)
    for state in (None, "paid"):
        for page in (lambda after: orders.buyer_orders(ctx, buyer, state, 1, 1, after),
                     lambda after: orders.seller_orders(ctx, seller, None, state, 1, 1, after),
                     lambda after: orders.seller_orders(ctx, seller, store, state, 1, 1, after)):
            cursor = page(None).next or "WyJvcmRlcnMiLDAsIiJd"  # ["orders",0,""] at the end
            page(cursor)  # the page after a cursor

    # payment itself refuses (and cancels) an order past its deadline
    overdue = orders.new_order(ctx, buyer, store, lines)
    ctx.clock.advance(ctx.settings.pay_timeout_s + 1)
    with pytest.raises(errors.OrderExpired):
        orders.payment(ctx, buyer, overdue)
    sessions.login(ctx, buyer, bpw, "t")
    sessions.login(ctx, seller, "pw_seller", "t")

    # timeouts: an overdue unpaid order, an overdue shipped one, through handlers and sweep
    late = orders.new_order(ctx, buyer, store, lines)
    shipped = orders.new_order(ctx, buyer, store, lines)
    orders.payment(ctx, buyer, shipped)
    orders.ship(ctx, seller, shipped)
    # steps a dead request left half done, for recovery
    crash_at(ctx, lambda: orders.new_order(ctx, buyer, store, lines), 2)
    for at in (2, 3):
        oid = orders.new_order(ctx, buyer, store, lines)
        crash_at(ctx, lambda: orders.payment(ctx, buyer, oid), at)
    oid = orders.new_order(ctx, buyer, store, lines)
    crash_at(ctx, lambda: orders.cancel_order(ctx, buyer, oid), 2)
    ctx.clock.advance(ctx.settings.receive_timeout_s + 1)
    orders.expire_payment(ctx, late)
    orders.auto_receive(ctx, shipped)
    try:
        from be import watcher
    except ImportError:
        watcher = None
    if watcher is not None:
        watcher.sweep(ctx)
    else:
        for order in ctx.db.orders.find({"busy": {"$ne": None}}):
            orders.recover(ctx, order)
    sessions.login(ctx, buyer, bpw, "t")

    try:
        from be.model import search
    except ImportError:
        search = None
    if search is not None and hasattr(search, "search_books"):
        search.search_books(ctx, "三体")
        search.search_books(ctx, "dune", store_id=store)
        search.search_books(ctx, "introduction", fields="book_intro")
        search.get_book(ctx, "wb0")
        search.get_book(ctx, "wb0", store)
        search.get_picture(ctx, "wb0", 0)
        search.get_picture(ctx, "wb0", 0, store)

    users.change_password(ctx, buyer, bpw, "new-pw")
    token = sessions.login(ctx, buyer, "new-pw", "t")
    users.own_balance(ctx, buyer)
    users.add_funds(ctx, buyer, -1)
    sessions.logout(ctx, buyer, token)
    users.unregister(ctx, buyer, "new-pw")


def test_every_query_of_the_workload_is_served(ctx, make_user):
    rec = Recorder()
    embedded.OBSERVERS.append(rec)
    try:
        _workload(ctx, make_user)
    finally:
        embedded.OBSERVERS.remove(rec)
    shapes = rec.snapshot()
    print("\n" + rec.report())
    uncovered = rec.uncovered()
    assert not uncovered, "queries no declared index serves:\n" + _describe(uncovered)
    # the workload reaches the queries that matter (so this test cannot pass empty)
    methods = {(s.collection, s.method) for s in shapes}
    for needed in [("orders", "find"), ("orders", "count_documents"),
                   ("orders", "find_one_and_update"), ("listings", "UpdateOne"),
                   ("users", "find_one"), ("sessions", "find_one"), ("pending", "update_one"),
                   ("listings", "find"), ("sessions", "delete_many"), ("descriptions", "find"),
                   ("pictures", "find_one"),
                   ("pictures", "UpdateOne")]:
        assert needed in methods, needed
    # and no declared query index is dead weight: each serves some recorded query
    used = set()
    for shape in shapes:
        fields = {f: k for f, k in shape.filter if f != "$or"}
        sort = () if shape.method == "count_documents" else shape.sort
        for keys, options in INDEXES.get(shape.collection, []):
            if querycheck._try_index(keys, options, fields, sort)[0]:
                used.add((shape.collection, tuple(keys)))
    unused = [(coll, keys) for coll, specs in INDEXES.items() for keys, opts in specs
              if "expireAfterSeconds" not in opts and (coll, tuple(keys)) not in used
              and (coll, tuple(keys)) not in NO_QUERY_YET]
    assert not unused, f"declared indexes that no workload query uses: {unused}"


# Declared indexes no application query uses yet, and why they stay.
NO_QUERY_YET = {
    ("stores", (("owner_id", ASC),)): "a seller's stores (no endpoint lists them yet); "
                                      "stores are few and rarely written, so it costs little",
}


def _describe(uncovered):
    return "\n".join(f"  {s.collection}.{s.method} filter={dict(s.filter)} sort={list(s.sort)}: "
                     f"{v.reason}  [{', '.join(sites)}]" for s, v, sites in uncovered)


# ---------------------------------------------------------------- the whole suite

_SUITE = Recorder()
embedded.OBSERVERS.append(_SUITE)  # from collection on: every test's queries


@pytest.fixture(scope="session", autouse=True)
def suite_queries_are_served():
    """At the end of the session: every shape any test made application code
    issue is served (an error at teardown of the last test lists them)."""
    yield _SUITE
    if _SUITE in embedded.OBSERVERS:
        embedded.OBSERVERS.remove(_SUITE)
    uncovered = _SUITE.uncovered()
    assert not uncovered, (
        "queries issued during the test suite that no declared index serves:\n"
        + _describe(uncovered))


def test_suite_recorder_is_collecting(ctx, make_user):
    make_user()
    assert any(s.collection == "users" for s in _SUITE.snapshot())
