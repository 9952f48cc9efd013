"""The embedded engine's ordered indexes (be.embedded.ordered) answer exactly as
mongomock's own match and sort do, and read only the window a list asks for.

The randomized test runs one sequence of writes against a collection with
compound indexes shaped like the order lists' (an equality prefix, then
``created_at``-like and ``_id`` keys, descending) and a unique pair like the
listings', and one without indexes; after every step the kept entries equal a
rebuild from the documents, and random list queries (a pinned prefix, a sort
in either direction, a cursor's range and ``$or``, skip and limit) and counts
give what a full match and mongomock's stable sort give. Odd values (arrays,
booleans, sub-documents) come and go: while one is stored the index steps
aside, and serves again once it is gone.
"""
import copy
import datetime
import random

import pytest
from mongomock import collection as mm_collection
from mongomock.filtering import filter_applies

from be import embedded
from be.embedded import fastpaths, ordered
from be.tests.test_embedded import _ids, _mongomock_sorted, _store

T0 = datetime.datetime(2024, 1, 1)
OWNERS = ["u1", "u2", "u3", None]
STATES = ["paid", "unpaid", "shipped"]
TIMES = [T0 + datetime.timedelta(seconds=n) for n in range(12)]
ODD = [["u1"], True, {"x": 1}, float("nan"), 1, 2.0]  # the numbers are fine: a rank of their own


def _pair():
    db = embedded.EmbeddedEngine().database("ordered")
    fast, plain = db["fast"], db["plain"]
    fast.create_index([("owner", 1), ("t", -1), ("_id", -1)])
    fast.create_index([("owner", 1), ("state", 1), ("t", -1), ("_id", -1)])
    for coll in (fast, plain):
        coll.create_index([("shop", 1), ("book", 1)], unique=True)
    return fast, plain


def _doc(rnd, n):
    doc = {"_id": f"o{n:03d}", "owner": rnd.choice(OWNERS), "state": rnd.choice(STATES),
           "t": rnd.choice(TIMES), "shop": rnd.choice(["s1", "s2"]), "book": f"b{n:03d}"}
    if rnd.random() < 0.1:
        del doc["owner"]  # missing: sorts and matches as null
    if rnd.random() < 0.04:
        doc[rnd.choice(["owner", "state", "t"])] = rnd.choice(ODD)
    return doc


def _write(rnd, ids, counter, odd):
    """One random write as (method, args); ``odd`` holds the ids given an odd value
    (most get a plain one back soon, so the indexes serve again)."""
    pick = rnd.random()
    if odd and rnd.random() < 0.3:
        target = odd.pop()
        return "update_one", ({"_id": target}, {"$set": {"owner": rnd.choice(OWNERS),
                                                         "state": "paid", "t": TIMES[3]}})
    if pick < 0.45 or not ids:
        counter[0] += 1
        doc = _doc(rnd, counter[0])
        if any(type(doc.get(f)) not in (str, type(None), datetime.datetime)
               for f in ("owner", "state", "t")):
            odd.add(doc["_id"])
        return "insert_one", (doc,)
    target = rnd.choice(sorted(ids))
    if pick < 0.75:
        field = rnd.choice(["owner", "state", "t"])
        if rnd.random() < 0.05:
            value = rnd.choice(ODD)
            odd.add(target)
        else:
            value = {"owner": rnd.choice(OWNERS), "state": rnd.choice(STATES),
                     "t": rnd.choice(TIMES)}[field]
        return "update_one", ({"_id": target}, {"$set": {field: value}})
    if pick < 0.85:
        return "update_many", ({"state": rnd.choice(STATES)}, {"$set": {"t": rnd.choice(TIMES)}})
    if pick < 0.9:
        counter[0] += 1
        odd.discard(target)  # the replacement may bring its own
        doc = _doc(rnd, counter[0])
        if any(type(doc.get(f)) not in (str, type(None), datetime.datetime)
               for f in ("owner", "state", "t")):
            odd.add(target)
        return "replace_one", ({"_id": target}, {k: v for k, v in doc.items() if k != "_id"})
    return "delete_one", ({"_id": target},)


def _query(rnd):
    flt = {"owner": rnd.choice(OWNERS)}
    if rnd.random() < 0.5:
        flt["state"] = rnd.choice(STATES)
    if rnd.random() < 0.4:  # a cursor: the rows after (t, _id) in newest-first order
        t, oid = rnd.choice(TIMES), f"o{rnd.randint(0, 80):03d}"
        flt["t"] = {"$lte": t}
        flt["$or"] = [{"t": {"$lt": t}}, {"_id": {"$lt": oid}}]
    elif rnd.random() < 0.2:
        flt["t"] = {rnd.choice(["$gt", "$gte", "$lt", "$lte"]): rnd.choice(TIMES)}
    sort = rnd.choice([[("t", -1), ("_id", -1)], [("t", 1), ("_id", 1)],
                       [("owner", 1), ("t", -1), ("_id", -1)], [("t", -1)],
                       [("t", -1), ("_id", 1)]])
    return flt, sort


def _check_entries(coll):
    kept = _store(coll).__dict__.get("_ordered", {})
    for name, index in kept.items():
        fresh = ordered._OrderedIndex(index.fields, index.unique, _store(coll)._documents)
        assert [e[:-2] + (e[-1],) for e in index.entries] == \
            [e[:-2] + (e[-1],) for e in fresh.entries], name
        assert index.odd == fresh.odd, name


@pytest.mark.parametrize("seed", range(5))
def test_ordered_indexes_answer_as_a_full_match_and_sort(seed):
    rnd = random.Random(seed)
    fast, plain = _pair()
    served = []
    real_walk = ordered.walk

    def spying(*args):
        walked = real_walk(*args)
        if args[0].name == "fast":
            served.append(walked is not None)
        return walked

    ordered.walk = spying
    try:
        counter, odd = [0], set()
        for step in range(150):
            ids = {d["_id"] for d in _store(fast)._documents.values()}
            method, args = _write(rnd, ids, counter, odd)
            for coll in (fast, plain):
                getattr(coll, method)(*copy.deepcopy(args))
            _check_entries(fast)
            docs = list(_store(fast)._documents.values())
            for _ in range(4):
                flt, sort = _query(rnd)
                skip, limit = rnd.randint(0, 3), rnd.randint(1, 5)
                expected = _mongomock_sorted([d for d in docs if filter_applies(flt, d)], sort)
                window = {"sort": sort, "skip": skip, "limit": limit}
                assert _ids(fast.find(flt, **window)) == _ids(expected[skip:skip + limit]), \
                    (step, flt, sort)
                assert _ids(fast.find(flt, sort=sort)) == _ids(expected), (step, flt, sort)
                assert _ids(plain.find(flt, **window)) == _ids(expected[skip:skip + limit])
                pinned = {k: v for k, v in flt.items() if k in ("owner", "state")}
                count = len([d for d in docs if filter_applies(pinned, d)])
                assert fast.count_documents(pinned) == count, pinned
                assert fast.count_documents(pinned, skip=skip, limit=limit) == \
                    min(max(count - skip, 0), limit)
            books = _ids(fast.find({"shop": "s1", "book": {"$gt": "b010"}},
                                   sort=[("shop", 1), ("book", 1)], limit=3))
            expected = sorted((d for d in docs if d["shop"] == "s1" and d["book"] > "b010"),
                              key=lambda d: d["book"])[:3]
            assert books == _ids(expected)
    finally:
        ordered.walk = real_walk
    print(f"served {sum(served)} of {len(served)}")
    # it served many (not those sorted with mixed directions, or while odd), and stepped aside
    assert sum(served) > len(served) / 4 and not all(served)


def test_a_list_page_reads_only_its_window(monkeypatch):
    db = embedded.EmbeddedEngine().database("window")
    coll = db["orders"]
    coll.create_index([("seller", 1), ("state", 1), ("t", -1), ("_id", -1)])
    coll.insert_many([{"_id": f"o{i:05d}", "seller": "s", "state": ("paid", "unpaid")[i % 2],
                       "t": T0 + datetime.timedelta(seconds=i // 3)} for i in range(6000)])
    calls = []

    def counting(real):
        def match(flt, doc):
            calls.append(1)
            return real(flt, doc)
        return match

    def no_sort(*args):
        raise AssertionError("sorted every candidate")

    monkeypatch.setattr(fastpaths, "_applies", counting(fastpaths._applies))
    monkeypatch.setattr(mm_collection, "filter_applies", counting(mm_collection.filter_applies))
    monkeypatch.setattr(fastpaths, "_sorted_by", no_sort)
    newest = [{"_id": f"o{i:05d}"} for i in range(5998, 5978, -2)]
    page = coll.find({"seller": "s", "state": "paid"}, sort=[("t", -1), ("_id", -1)], limit=10)
    assert _ids(page) == _ids(newest)
    assert calls == []                              # the prefix settles the filter
    assert coll.count_documents({"seller": "s", "state": "paid"}, limit=10_001) == 3000
    assert calls == []                              # bisected, nothing read
    last = page[-1]
    after = {"seller": "s", "state": "paid", "t": {"$lte": last["t"]},
             "$or": [{"t": {"$lt": last["t"]}}, {"_id": {"$lt": last["_id"]}}]}
    page = coll.find(after, sort=[("t", -1), ("_id", -1)], limit=10)
    assert _ids(page) == [f"o{i:05d}" for i in range(5978, 5958, -2)]
    # the page, the row before it and the cursor's tie: each through the engine's
    # matcher and mongomock's (the $or is left to it)
    assert len(calls) <= 2 * 12


def test_an_odd_value_turns_the_index_off_until_it_is_gone():
    db = embedded.EmbeddedEngine().database("odd")
    coll = db["orders"]
    coll.create_index([("owner", 1), ("t", -1), ("_id", -1)])
    coll.insert_many([{"_id": f"o{i}", "owner": "u", "t": TIMES[i]} for i in range(5)])
    sort = [("t", -1), ("_id", -1)]
    assert ordered.walk(coll._collection, {"owner": "u"}, sort, fastpaths._applies) is not None
    coll.update_one({"_id": "o2"}, {"$set": {"owner": ["u", "v"]}})  # multikey: matches "u"
    assert ordered.walk(coll._collection, {"owner": "u"}, sort, fastpaths._applies) is None
    assert _ids(coll.find({"owner": "u"}, sort=sort)) == ["o4", "o3", "o2", "o1", "o0"]
    assert coll.count_documents({"owner": "u"}) == 5
    coll.update_one({"_id": "o2"}, {"$set": {"owner": "v"}})
    assert ordered.walk(coll._collection, {"owner": "u"}, sort, fastpaths._applies) is not None
    assert _ids(coll.find({"owner": "u"}, sort=sort)) == ["o4", "o3", "o1", "o0"]
    assert coll.count_documents({"owner": "u"}) == 4
