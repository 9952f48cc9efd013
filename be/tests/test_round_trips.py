"""Database round trips per call, pinned: new_order and payment make a small fixed
number of calls to the database however many lines an order has (every per-line
write goes in one bulk_write), and repeated password checks skip the hash.

The embedded engine's ``observer`` sees every collection call; one call is one
round trip to a real MongoDB (a bulk_write of n operations is one).
"""
import pytest

from be import passwords
from be.model import orders, sessions, stores, users
from be.tests.conftest import new_id

pytestmark = pytest.mark.embedded_only  # it counts calls with the embedded engine's observer


# What each HTTP call does, edge and model: the token or password check that the
# edge (be.api.common) makes once per request, then the one model function.

def new_order(ctx, user_id, token, store_id, lines):
    sessions.authenticate(ctx, user_id, token)
    return orders.new_order(ctx, user_id, store_id, lines)


def payment(ctx, user_id, order_id, password):
    users.check_password(ctx, user_id, password)
    orders.payment(ctx, user_id, order_id)


def add_funds(ctx, user_id, password, value):
    users.check_password(ctx, user_id, password)
    users.add_funds(ctx, user_id, value)

AUTHENTICATE = [("users", "find_one"), ("sessions", "find_one")]

NEW_ORDER = AUTHENTICATE + [
    ("stores", "find_one"),                # the store and its owner
    ("listings", "find"),                  # every line's price and stock, by _id $in
    ("orders", "insert_one"),              # the order, marked busy: reserve
    ("listings", "bulk_write"),            # take the stock of every line (marked)
    ("orders", "find_one_and_update"),     # reserved: owe the markers' removal
    ("listings", "bulk_write"),            # remove the markers
    ("orders", "update_one"),              # clear busy
    ("pending", "insert_one"),             # the pay-deadline timer
]

PASSWORD = [
    ("throttle", "find"),                  # the account's and address's failure counters
    ("users", "find_one"),                 # password (hash cached per process)
]

PAYMENT = PASSWORD + [
    ("orders", "find_one_and_update"),     # claim: buyer, unpaid, not busy, not overdue
    ("users", "update_one"),               # debit the buyer (marked)
    ("orders", "find_one_and_update"),     # paid; owe the marker's removal
    ("users", "bulk_write"),               # remove the marker
    ("orders", "update_one"),              # clear busy
    ("pending", "delete_one"),             # drop the pay-deadline timer
]

ADD_FUNDS = PASSWORD + [("users", "update_one")]


@pytest.fixture
def calls(ctx):
    """The (collection, method, bulk size) of every database call, as it happens."""
    seen = []

    def observe(collection, method, args, kwargs):
        size = None
        if method == "bulk_write":
            size = len(list(kwargs.get("requests", args[0] if args else [])))
        seen.append((collection, method, size))

    ctx.engine.embedded.observer = observe
    yield seen
    ctx.engine.embedded.observer = None


@pytest.fixture
def big_shop(ctx, make_user):
    seller, _, token = make_user("seller")
    store_id = new_id("store")
    stores.create_store(ctx, seller, store_id)
    for i in range(50):
        stores.add_book(ctx, seller, store_id,
                        {"id": f"bk{i}", "title": f"Book {i}", "price": 100 + i}, 1000)
    return store_id


def _names(calls):
    return [(c, m) for c, m, _ in calls]


@pytest.mark.parametrize("lines", [1, 10, 50])
def test_new_order_and_payment_round_trips_do_not_grow_with_lines(ctx, make_user, big_shop,
                                                                  calls, lines):
    buyer, pw, token = make_user("buyer", funds=10**9)
    calls.clear()
    oid = new_order(ctx, buyer, token, big_shop, [(f"bk{i}", 2) for i in range(lines)])
    assert _names(calls) == NEW_ORDER, _names(calls)
    assert len(calls) == 10
    assert [s for c, m, s in calls if m == "bulk_write"] == [lines, lines]

    calls.clear()
    payment(ctx, buyer, oid, pw)
    assert _names(calls) == PAYMENT, _names(calls)
    assert len(calls) == 8
    assert [s for c, m, s in calls if m == "bulk_write"] == [1]
    assert ctx.db.orders.find_one({"_id": oid})["state"] == "paid"


def test_add_funds_is_three_round_trips(ctx, make_user, calls):
    uid, pw, _ = make_user()
    calls.clear()
    add_funds(ctx, uid, pw, 100)
    assert _names(calls) == ADD_FUNDS


def test_payment_errors_read_the_order_only_when_the_claim_fails(ctx, make_user, big_shop,
                                                                 calls):
    buyer, pw, token = make_user("buyer", funds=10**9)
    oid = new_order(ctx, buyer, token, big_shop, [("bk0", 1)])
    payment(ctx, buyer, oid, pw)
    calls.clear()
    with pytest.raises(Exception) as exc:
        payment(ctx, buyer, oid, pw)  # paid already: 520
    assert exc.value.code == 520
    assert _names(calls) == PASSWORD + [("orders", "find_one_and_update"),
                                        ("orders", "find_one")]


# ---------------------------------------------------------------- password cache

def test_repeated_password_checks_skip_the_hash(ctx, big_shop, hash_checks):
    buyer, pw = new_id("buyer"), "pw-buyer"
    users.register(ctx, buyer, pw)
    token = sessions.login(ctx, buyer, pw, "t")
    assert len(hash_checks) == 1                    # first check: the real hash
    add_funds(ctx, buyer, pw, 10**6)
    add_funds(ctx, buyer, pw, 1)
    for _ in range(3):
        oid = new_order(ctx, buyer, token, big_shop, [("bk1", 1)])
        payment(ctx, buyer, oid, pw)
    assert len(hash_checks) == 1                    # every later one: the cache
    # a wrong password is still refused, and the stored hash stays salted
    with pytest.raises(Exception) as exc:
        add_funds(ctx, buyer, pw + "x", 1)
    assert exc.value.code == 401
    stored = ctx.db.users.find_one({"_id": buyer})["password_hash"]
    assert stored.startswith(("pbkdf2:", "scrypt:")) and pw not in stored
    # a new password makes the cached entry stale: the next check hashes again
    users.change_password(ctx, buyer, pw, "new-pw")
    hash_checks.clear()
    add_funds(ctx, buyer, "new-pw", 1)
    add_funds(ctx, buyer, "new-pw", 1)
    assert len(hash_checks) == 1
    with pytest.raises(Exception):
        add_funds(ctx, buyer, pw, 1)          # the old one no longer works


def test_password_cache_holds_no_password():
    hasher = passwords.PasswordHasher("pbkdf2:sha256:1000")
    stored = hasher.hash("s3cret-pw")
    assert hasher.verify("u", stored, "s3cret-pw")
    (entry,) = hasher._verified.values()
    assert all(b"s3cret-pw" not in (v if isinstance(v, bytes) else v.encode()) for v in entry)
    other = passwords.PasswordHasher("pbkdf2:sha256:1000")  # another process: own key
    assert other._tag("s3cret-pw") != hasher._tag("s3cret-pw")


# ---------------------------------------------------------------- the embedded engine's shortcuts

# be.embedded answers _id lookups directly, pre-screens scans with cheap checks,
# keeps unique indexes in hash maps and copies documents with a plain recursive
# copy. Each must answer exactly as mongomock's full match does.

@pytest.fixture
def coll():
    from be.embedded import EmbeddedEngine
    return EmbeddedEngine().database("shortcuts")["docs"]


def _docs():
    import datetime
    import random
    rnd = random.Random(7)
    t0 = datetime.datetime(2024, 1, 1)
    out = []
    for i in range(300):
        doc = {"_id": f"d{i}", "n": i}
        pick = rnd.random()
        if pick < 0.6:
            doc["state"] = rnd.choice(["unpaid", "paid", "shipped"])
        elif pick < 0.7:
            doc["state"] = ["unpaid", "paid"]          # an array holding the value
        elif pick < 0.8:
            doc["state"] = None
        elif pick < 0.9:
            doc["state"] = {"nested": "unpaid"}
        if rnd.random() < 0.5:
            doc["due"] = t0 + datetime.timedelta(hours=rnd.randint(0, 100))
        if rnd.random() < 0.3:
            doc["busy"] = {"since": t0 + datetime.timedelta(hours=rnd.randint(0, 100))}
        elif rnd.random() < 0.2:
            doc["busy"] = None
        elif rnd.random() < 0.2:
            doc["busy"] = [{"since": t0}, {"since": t0 + datetime.timedelta(hours=50)}]
        out.append(doc)
    return out


def test_scans_and_lookups_match_a_full_match(coll):
    import datetime
    from mongomock.filtering import filter_applies
    docs = _docs()
    coll.insert_many([dict(d) for d in docs])
    t = datetime.datetime(2024, 1, 3)
    filters = [
        {"state": "unpaid"},
        {"state": {"$in": ["paid", "shipped"]}},
        {"state": "unpaid", "due": {"$lte": t}},
        {"state": "unpaid", "due": {"$lte": t}, "busy": None},
        {"busy.since": {"$lt": t}},
        {"due": {"$gt": t, "$lt": t + datetime.timedelta(days=1)}},
        {"n": {"$gte": 150}},
        {"state": None},
        {"state": {"$in": ["paid", None]}},
        {"_id": "d5"}, {"_id": "d5", "n": 6}, {"_id": "nope"},
        {"_id": {"$in": ["d3", "d1", "d3", "zz"]}},
        {"_id": {"$in": ["d3", "d1"]}, "n": 1},
    ]
    for flt in filters:
        expected = {d["_id"] for d in docs if filter_applies(flt, d)}
        got = [d["_id"] for d in coll.find(flt)]
        assert len(got) == len(set(got)) and set(got) == expected, flt
        assert coll.count_documents(flt) == len(expected), flt


def test_unique_indexes_still_refuse_duplicates(coll):
    from pymongo.errors import DuplicateKeyError
    coll.create_index([("a", 1), ("b", 1)], unique=True)
    coll.insert_one({"_id": 1, "a": 1, "b": 1})
    coll.insert_one({"_id": 2, "a": 1, "b": 2})
    with pytest.raises(DuplicateKeyError):
        coll.insert_one({"_id": 3, "a": 1, "b": 1})
    with pytest.raises(DuplicateKeyError):
        coll.update_one({"_id": 2}, {"$set": {"b": 1}})
    assert coll.find_one({"_id": 2})["b"] == 2           # rolled back
    coll.delete_one({"_id": 1})
    coll.insert_one({"_id": 3, "a": 1, "b": 1})           # the key is free again
    coll.update_one({"_id": 3}, {"$set": {"b": 5}})      # moved away: free again
    coll.insert_one({"_id": 4, "a": 1, "b": 1})
    with pytest.raises(DuplicateKeyError):
        coll.insert_one({"_id": 5, "a": 1, "b": 5})
    coll.update_one({"_id": 4}, {"$set": {"c": 1}})       # other fields change freely
    assert coll.count_documents({}) == 3


def test_updates_report_modified_counts_and_copy_documents(coll):
    coll.insert_one({"_id": "x", "ops": [], "sub": {"list": [1, {"k": "v"}]}})
    assert coll.update_one({"_id": "x"}, {"$push": {"sub.list": 2}}).modified_count == 1
    assert coll.update_one({"_id": "x"}, {"$set": {"ops": []}}).modified_count == 0
    got = coll.find_one({"_id": "x"})
    got["sub"]["list"][1]["k"] = "changed"                 # a copy, not the stored doc
    assert coll.find_one({"_id": "x"})["sub"]["list"] == [1, {"k": "v"}, 2]
