"""The embedded engine's shortcuts answer exactly as mongomock's own code does.

be.embedded keeps, for the first key of every index, a map value -> documents,
maintained on every write, and serves equality / ``$in`` / range clauses from it;
it also sorts plain values natively and copies only a limited cursor's window.
The randomized test runs one sequence of writes (inserts, updates with $set,
$inc, $push, $pull, $unset, $addToSet, $rename, upserts, replacements, deletes,
find_one_and_*, bulk_write) against a collection with indexes (served from the
maps) and one without (scans), compares every write's result, and after every
step checks: the stored documents are the same, in the same order; every query
gives the documents ``filter_applies`` picks from all stored documents, in
natural order, and with a sort the window of mongomock's own sort; and the
maintained maps equal maps rebuilt from scratch.
"""
import copy
import datetime
import random
import threading

import bson
import pytest
from mongomock import collection as mm_collection
from mongomock.filtering import filter_applies, resolve_sort_key
from pymongo import (DeleteMany, DeleteOne, InsertOne, ReplaceOne, ReturnDocument,
                     UpdateMany, UpdateOne)

from be import embedded
from be.embedded import fastpaths, indexmaps

pytestmark = pytest.mark.embedded_only  # it tests the embedded engine

T0 = datetime.datetime(2024, 1, 1)
OID = bson.ObjectId("65a000000000000000000001")
# values that collide under Python == (mongomock's equality): 1, 1.0, True
SCALARS = [0, 1, 1.0, True, False, 2, -3, "a", "b", "1", "", None, T0,
           T0 + datetime.timedelta(hours=1), OID, str(OID)]
INDEXED = ["a", "tags", "sub.x", "b", "u"]
FIELDS = INDEXED + ["c", "tags.0", "sub"]


def _engine_pair():
    """Two collections of one patched engine: ``fast`` with indexes, ``plain``
    with only the unique one (it decides which writes fail), so every other query
    there scans, as mongomock does."""
    db = embedded.EmbeddedEngine().database("equiv")
    fast, plain = db["fast"], db["plain"]
    fast.create_index([("a", 1)])
    fast.create_index([("tags", 1)])
    fast.create_index([("sub.x", 1)])
    fast.create_index([("b", 1), ("c", -1)])
    for coll in (fast, plain):
        coll.create_index([("u", 1)], unique=True, sparse=True)
    return fast, plain


def _store(coll):
    return coll._collection._store


def _value(rnd, depth=0):
    pick = rnd.random()
    if pick < 0.6 or depth > 1:
        return rnd.choice(SCALARS)
    if pick < 0.85:
        return [_value(rnd, depth + 1) for _ in range(rnd.randint(0, 3))]
    return {"x": _value(rnd, depth + 1)} if rnd.random() < 0.7 else {"y": 1}


def _sub(rnd):
    pick = rnd.random()
    if pick < 0.5:
        return {"x": _value(rnd)}
    if pick < 0.7:
        return [{"x": rnd.choice(SCALARS)}, {"x": rnd.choice(SCALARS)}, {"z": 1}][:rnd.randint(0, 3)]
    if pick < 0.85:
        return {}
    return rnd.choice([None, 5, "s", [1, 2]])


def _doc(rnd, ids):
    doc = {"_id": rnd.choice(ids)}
    for field, chance in (("a", 0.8), ("b", 0.6), ("c", 0.5), ("u", 0.2)):
        if rnd.random() < chance:
            doc[field] = rnd.choice(SCALARS) if field != "a" else _value(rnd)
    if rnd.random() < 0.7:
        doc["tags"] = [rnd.choice(SCALARS[:12]) for _ in range(rnd.randint(0, 4))] \
            if rnd.random() < 0.85 else rnd.choice(SCALARS)
    if rnd.random() < 0.6:
        doc["sub"] = _sub(rnd)
    if doc.get("u") is None:
        doc.pop("u", None)
    if rnd.random() < 0.97:  # sort keys of one type (the engine's fast sort), or not
        doc["t"] = T0 + datetime.timedelta(minutes=rnd.randint(0, 20))
    if rnd.random() < 0.97:
        doc["s"] = rnd.choice(["x", "y", "z"]) if rnd.random() < 0.97 else 7
    return doc


def _clause(rnd):
    field = rnd.choice(FIELDS)
    pick = rnd.random()
    if pick < 0.3:
        value = rnd.choice(SCALARS)
    elif pick < 0.4:
        value = _value(rnd)                       # lists and sub-documents too
    elif pick < 0.5:
        value = {"$eq": rnd.choice(SCALARS)}
    elif pick < 0.7:
        value = {"$in": rnd.sample(SCALARS, rnd.randint(0, 4))}
    elif pick < 0.8:
        bound = rnd.choice([1, 2, "a", T0, T0 + datetime.timedelta(minutes=30)])
        value = {rnd.choice(["$gt", "$gte", "$lt", "$lte"]): bound}
    elif pick < 0.85:
        value = {"$ne": rnd.choice(SCALARS)}
    elif pick < 0.9:
        value = {"$exists": rnd.random() < 0.5}
    elif pick < 0.95:
        value = {"$nin": rnd.sample(SCALARS, 2)}
    else:
        value = float("nan")
    return {field: value}


def _filter(rnd):
    flt = {}
    for _ in range(rnd.randint(1, 3)):
        flt.update(_clause(rnd))
    pick = rnd.random()
    if pick < 0.3:
        flt["$and"] = [_clause(rnd) for _ in range(rnd.randint(1, 3))]
    elif pick < 0.4:
        flt["$or"] = [_clause(rnd), _clause(rnd)]
    return flt


def _update(rnd):
    ops = {}
    for _ in range(rnd.randint(1, 2)):
        op = rnd.choice(["$set", "$set", "$inc", "$push", "$pull", "$unset", "$addToSet",
                         "$rename"])
        field = rnd.choice(["a", "b", "c", "u", "tags", "sub", "sub.x", "n"])
        if op == "$set":
            arg = {field: _value(rnd) if field != "sub" else _sub(rnd)}
        elif op == "$inc":
            arg = {rnd.choice(["n", "a", "b"]): rnd.choice([1, -1, 2])}
        elif op in ("$push", "$addToSet"):
            arg = {"tags": rnd.choice(SCALARS[:12])}
        elif op == "$pull":
            arg = {"tags": rnd.choice(SCALARS[:12])}
        elif op == "$unset":
            arg = {field: ""}
        else:
            src, dst = rnd.sample(["a", "b", "c", "z"], 2)
            arg = {src: dst}
        ops.setdefault(op, {}).update(arg)
    # mongomock refuses two operators on one path: keep the first one's
    seen, clean = set(), {}
    for op, arg in ops.items():
        kept = {k: v for k, v in arg.items()
                if k.split(".")[0] not in seen and (op != "$rename" or v not in seen)}
        seen.update(k.split(".")[0] for k in kept)
        seen.update(v for k, v in kept.items() if op == "$rename")
        if kept:
            clean[op] = kept
    return clean


def _write(rnd, ids):
    """One random write as (method name, args, kwargs)."""
    pick = rnd.random()
    if pick < 0.2:
        return "insert_one", (_doc(rnd, ids),), {}
    if pick < 0.27:
        return "insert_many", ([_doc(rnd, ids) for _ in range(5)],), {"ordered": rnd.random() < 0.5}
    if pick < 0.45:
        flt, upsert = _filter(rnd), False
        if rnd.random() < 0.3:
            flt, upsert = {"_id": rnd.choice(ids[:-1]), **_clause(rnd)}, True
        return rnd.choice(["update_one", "update_many"]), (flt, _update(rnd)), {"upsert": upsert}
    if pick < 0.52:
        replacement = _doc(rnd, ids)
        replacement.pop("_id")
        flt, upsert = _filter(rnd), False
        if rnd.random() < 0.3:
            flt, upsert = {"_id": rnd.choice(ids[:-1])}, True
        return "replace_one", (flt, replacement), {"upsert": upsert}
    if pick < 0.6:
        return rnd.choice(["delete_one"] * 4 + ["delete_many"]), (_filter(rnd),), {}
    if pick < 0.7:
        return "find_one_and_update", (_filter(rnd), _update(rnd)), {
            "sort": rnd.choice([None, [("a", 1)], [("b", -1), ("_id", 1)]]),
            "return_document": rnd.choice([ReturnDocument.BEFORE, ReturnDocument.AFTER])}
    if pick < 0.75:
        return "find_one_and_delete", (_filter(rnd),), {}
    requests = []
    for _ in range(rnd.randint(1, 4)):
        kind = rnd.choice([InsertOne, UpdateOne, UpdateMany, ReplaceOne, DeleteOne, DeleteMany])
        if kind is InsertOne:
            requests.append(InsertOne(_doc(rnd, ids)))
        elif kind in (UpdateOne, UpdateMany):
            requests.append(kind(_filter(rnd), _update(rnd)))
        elif kind is ReplaceOne:
            replacement = _doc(rnd, ids)
            replacement.pop("_id")
            requests.append(ReplaceOne({"_id": rnd.choice(ids[:-1])}, replacement,
                                       upsert=rnd.random() < 0.5))
        else:
            requests.append(kind(_filter(rnd)))
    return "bulk_write", (requests,), {"ordered": rnd.random() < 0.5}


def _outcome(coll, method, args, kwargs):
    args, kwargs = copy.deepcopy(args), copy.deepcopy(kwargs)  # mongomock fills in _ids
    try:
        result = getattr(coll, method)(*args, **kwargs)
    except Exception as exc:  # the same error on both sides is fine
        return ("error", type(exc).__name__)
    for attr in ("bulk_api_result", "raw_result", "inserted_id", "inserted_ids",
                 "deleted_count"):
        if hasattr(result, attr):
            return (method, getattr(result, attr))
    return (method, result)


def _maps_from_scratch(store):
    fresh = {}
    state = store._secondary
    for field, fmap in state.maps.items():
        again = indexmaps._FieldMap(field)
        for key, doc in store._documents.items():
            again.update(state.seq[key], indexmaps._NO_KEYS, again.keys(doc))
        fresh[field] = again
    return fresh


def _mongomock_sorted(docs, sort):
    """mongomock's own sort: one stable pass per key, last key first."""
    for field, direction in reversed(sort):
        docs = sorted(docs, key=lambda d: resolve_sort_key(field, d), reverse=direction < 0)
    return docs


def _ids(docs):
    # .get: mongomock drops the field of an _id None document that is replaced
    return [d.get("_id") for d in docs]


def _check_stores(fast, plain):
    """Both collections hold the same documents in the same order, and each one's
    maps and ranks equal what a rebuild from its documents gives."""
    fast_store, plain_store = _store(fast), _store(plain)
    # by repr: tells 1 from 1.0 and True, and a stored NaN from nothing
    assert repr(list(fast_store._documents.items())) == \
        repr(list(plain_store._documents.items()))
    for store in (fast_store, plain_store):
        state = store.__dict__.get("_secondary")
        if state is None:
            continue
        assert set(state.seq) == set(store._documents)
        assert state.keys == {rank: key for key, rank in state.seq.items()}
        ranks = [state.seq[k] for k in store._documents]
        assert ranks == sorted(ranks)
        for field, fresh in _maps_from_scratch(store).items():
            kept = state.maps[field]
            assert kept.buckets == fresh.buckets, field
            assert kept.present == fresh.present, field


def _check(fast, plain, rnd, queries):
    _check_stores(fast, plain)
    docs = list(_store(fast)._documents.values())
    for _ in range(queries):
        flt = _filter(rnd)
        expected = [d.get("_id") for d in docs if filter_applies(flt, d)]
        assert _ids(fast.find(flt)) == expected, flt
        assert fast.count_documents(flt) == len(expected), flt
        found = fast.find_one(flt)
        assert (found is not None, found and found.get("_id")) == \
            (bool(expected), expected[0] if expected else None), flt
        sort = rnd.choice([[("a", 1), ("_id", -1)], [("t", -1), ("_id", -1)],
                           [("s", 1), ("t", 1)], [("n", 1)], [("c", -1)]])
        skip, limit = rnd.randint(0, 2), rnd.randint(1, 4)
        ordered = _mongomock_sorted([d for d in docs if filter_applies(flt, d)], sort)
        window = {"sort": sort, "skip": skip, "limit": limit}
        assert _ids(fast.find(flt, **window)) == _ids(ordered[skip:skip + limit]), (flt, sort)
        assert _ids(plain.find(flt, **window)) == _ids(ordered[skip:skip + limit]), (flt, sort)


@pytest.mark.parametrize("seed", range(6))
def test_indexed_queries_match_a_full_match(seed):
    rnd = random.Random(seed)
    fast, plain = _engine_pair()
    ids = [f"d{i}" for i in range(40)] + [1, 2, 2.5, None]  # _id None is a stored key too
    sizes = []
    for step in range(120):
        if step == 60:
            # an index made late is built from the documents; a dropped one is forgotten
            fast.create_index([("c", 1)])
            fast.drop_index("b_1_c_-1")
        method, args, kwargs = _write(rnd, ids)
        assert repr(_outcome(fast, method, args, kwargs)) == \
            repr(_outcome(plain, method, args, kwargs)), (step, method, args, kwargs)
        _check(fast, plain, rnd, queries=4)
        sizes.append(len(_store(fast)._documents))
    assert max(sizes) >= 10  # the sequence had documents to tell apart


@pytest.mark.parametrize("seed", range(3))
def test_a_map_filled_in_one_pass_equals_one_built_per_document(seed):
    # _FieldMap.fill (a new index, a loaded data folder) against update per document
    rnd = random.Random(seed)
    docs = {}
    for n in range(300):
        doc = _doc(rnd, [n])
        if rnd.random() < 0.2:
            doc["tags"] = [rnd.choice(["p", "q", "r", "1"]) for _ in range(rnd.randint(0, 4))]
        docs[n] = doc
    for field in INDEXED + ["t", "s"]:
        filled, built = indexmaps._FieldMap(field), indexmaps._FieldMap(field)
        filled.fill(docs.items())  # the keys 0..299 stand for ranks
        for key, doc in docs.items():
            built.update(key, indexmaps._NO_KEYS, built.keys(doc))
        assert filled.buckets == built.buckets and filled.present == built.present, field


def test_postings_hold_ranks_in_order_past_four_bytes():
    # a value's documents are one rank or an ascending array of ranks (4 bytes
    # each, 8 once a rank needs it); a posting shrunk to one rank is that rank
    fmap = indexmaps._FieldMap("t")
    big = 2 ** 32 + 5
    ranks = [9, 3, big, 7, 2 ** 32 - 1, big + 1, 3]
    for rank in ranks:  # an odd rank holds "x" and null, an even one "x" and True
        fmap.update(rank, indexmaps._NO_KEYS, {"x", rank % 2 == 0 or None})
    assert fmap.view() == {"x": set(ranks), None: set(ranks) - {big + 1}, True: {big + 1}}
    assert list(fmap.buckets["x"]) == sorted(set(ranks))
    assert list(fmap.present) == sorted(set(ranks))
    assert fmap.buckets[True] == big + 1
    for rank in (big, 3, 9, 7):
        fmap.update(rank, {"x", None}, indexmaps._NO_KEYS)
    assert fmap.buckets == {"x": fmap.buckets["x"], None: 2 ** 32 - 1, True: big + 1}
    assert list(fmap.buckets["x"]) == list(fmap.present) == [2 ** 32 - 1, big + 1]
    fmap.update(2 ** 32 - 1, {"x", None}, indexmaps._NO_KEYS)
    fmap.update(big + 1, {"x", True}, indexmaps._NO_KEYS)
    assert fmap.buckets == {} and not fmap.present


def test_maps_filled_in_the_background_serve_only_once_full_and_end_exact():
    # a loaded data folder's large collections (indexmaps.fill_in_background):
    # after every chunk of the filler the test writes and queries, then lets it go on
    rnd = random.Random(7)
    engine = embedded.EmbeddedEngine()
    coll = engine.database("background")["docs"]
    coll.create_index([("tags", 1)])
    coll.create_index([("a", 1)])
    coll.insert_many([{"_id": n, "a": rnd.choice(SCALARS[:12]),
                       "tags": [rnd.choice("pqrst") for _ in range(rnd.randint(0, 4))]}
                      for n in range(600)])
    store = _store(coll)
    assert "_secondary" not in store.__dict__  # no query yet: no maps
    chunk_done, go = threading.Semaphore(0), threading.Semaphore(0)

    def between():
        chunk_done.release()
        go.acquire()

    filler = indexmaps.fill_in_background(store, engine.lock, chunk_seconds=0,
                                          between=between)
    steps = 0
    while True:
        while not chunk_done.acquire(timeout=0.01):
            if not filler.is_alive():
                break
        else:
            steps += 1
            n = rnd.randrange(640)
            pick = rnd.random()
            if pick < 0.4:
                coll.update_one({"_id": n}, {"$set": {"tags": [rnd.choice("pqrsx")], "a": 1}})
            elif pick < 0.6:
                coll.delete_one({"_id": n})
            elif pick < 0.8:
                coll.replace_one({"_id": n}, {"a": "b", "tags": ["x", "p"]}, upsert=True)
            flt = rnd.choice([{"tags": "x"}, {"tags": {"$in": ["p", "q"]}}, {"a": 1},
                              {"a": "b", "tags": "p"}])
            docs = list(store._documents.values())
            assert _ids(coll.find(flt)) == [d["_id"] for d in docs if filter_applies(flt, d)]
            go.release()
            continue
        break
    filler.join()
    assert steps >= 15  # two maps of 600 documents, 64 per chunk
    for field, fmap in store._secondary.maps.items():
        fresh = indexmaps._FieldMap(field)
        fresh.fill(store._secondary.ranked(store._documents))
        assert fmap.ready and fmap.buckets == fresh.buckets and fmap.present == fresh.present


# ---------------------------------------------------------------- directed cases

@pytest.fixture
def coll():
    db = embedded.EmbeddedEngine().database("directed")
    coll = db["docs"]
    coll.create_index([("k", 1)])
    coll.create_index([("busy.since", 1)], sparse=True)
    return coll


def test_equality_follows_mongomock_not_mongodb(coll):
    coll.insert_many([{"_id": 1, "k": 1}, {"_id": 2, "k": True}, {"_id": 3, "k": 1.0},
                      {"_id": 4, "k": [0, 1]}, {"_id": 5}, {"_id": 6, "k": None},
                      {"_id": 7, "k": [[1]]}, {"_id": 8, "k": [None]}, {"_id": 9, "k": "1"},
                      {"_id": 10, "k": [str(OID)]}, {"_id": 11, "k": {"k": 1}}])
    # mongomock compares with ==: True, 1 and 1.0 are one value (MongoDB would not agree)
    assert _ids(coll.find({"k": True})) == [1, 2, 3, 4]
    assert _ids(coll.find({"k": None})) == [5, 6, 8]              # missing, null, [null]
    assert _ids(coll.find({"k": {"$in": [None, "1"]}})) == [5, 6, 8, 9]
    assert _ids(coll.find({"k": OID})) == [10]                    # mongomock's string quirk
    assert _ids(coll.find({"k": {"$eq": OID}})) == []
    assert _ids(coll.find({"k": {"$gt": 0}})) == [1, 3, 4]        # numbers only, not bools


def test_in_place_updates_move_documents_between_keys(coll):
    coll.insert_many([{"_id": i, "k": "unpaid"} for i in range(5)])
    coll.update_one({"_id": 2}, {"$set": {"k": "paid"}})
    coll.update_many({"k": "unpaid", "_id": {"$gte": 3}}, {"$set": {"k": "shipped"}})
    assert _ids(coll.find({"k": "unpaid"})) == [0, 1]
    assert _ids(coll.find({"k": {"$in": ["shipped", "paid"]}})) == [2, 3, 4]
    with pytest.raises(Exception):  # $inc on a string fails after $set has applied
        coll.update_one({"_id": 0}, {"$set": {"k": "half"}, "$inc": {"k": 1}})
    assert _ids(coll.find({"k": "half"})) == _ids(
        d for d in coll.find() if filter_applies({"k": "half"}, d))
    coll.replace_one({"_id": 1}, {"other": 1})
    assert _ids(coll.find({"k": None})) == [1]
    coll.update_one({"_id": 4}, {"$set": {"busy": {"since": T0}}})
    assert _ids(coll.find({"busy.since": {"$lt": T0 + datetime.timedelta(1)}})) == [4]
    coll.update_one({"_id": 4}, {"$unset": {"busy": ""}})
    assert _ids(coll.find({"busy.since": {"$lt": T0 + datetime.timedelta(1)}})) == []


def test_each_document_owns_what_an_update_wrote(coll):
    # mongomock stored one $set / $push sub-document in every document an
    # update_many changed: an in-place change to one changed them all
    coll.insert_many([{"_id": i, "k": "x"} for i in range(3)])
    coll.update_many({"k": "x"}, {"$set": {"busy": {"since": T0, "owner": "a"}},
                                  "$push": {"log": {"n": 1}}})
    coll.update_one({"_id": 0}, {"$unset": {"busy.since": ""}, "$inc": {"log.0.n": 1}})
    docs = coll.find({}, sort=[("_id", 1)])
    assert [d["busy"] for d in docs] == [{"owner": "a"}] + [{"since": T0, "owner": "a"}] * 2
    assert [d["log"] for d in docs] == [[{"n": 2}], [{"n": 1}], [{"n": 1}]]
    assert _ids(coll.find({"busy.since": T0})) == [1, 2]


def test_ttl_expiry_and_drop_keep_the_maps_in_step(coll):
    coll.create_index([("gone", 1)], expireAfterSeconds=0)
    coll.insert_many([{"_id": 1, "k": "x", "gone": T0}, {"_id": 2, "k": "x"}])
    store = _store(coll)
    store._last_expiry = 0.0  # the next read expires at once
    assert _ids(coll.find({"k": "x"})) == [2]
    coll.drop()
    coll.create_index([("k", 1)])
    coll.insert_one({"_id": 3, "k": "x"})
    assert _ids(coll.find({"k": "x"})) == [3]


def test_indexed_queries_do_not_scan(coll, monkeypatch):
    coll.insert_many([{"_id": i, "k": i % 100, "c": i % 7, "busy": {"since": T0} if i == 5 else None}
                      for i in range(3000)])
    calls = []

    def counting(real):
        def match(flt, doc):
            calls.append(1)
            return real(flt, doc)
        return match

    # the engine's own match and mongomock's (a scan calls it directly)
    monkeypatch.setattr(fastpaths, "_applies", counting(fastpaths._applies))
    monkeypatch.setattr(mm_collection, "filter_applies", counting(mm_collection.filter_applies))
    assert coll.count_documents({"k": 42}) == 30
    assert calls == []                              # the map's answer is exact
    expected = [i for i in range(3000) if i % 100 in (1, 2) and i % 7 == 3]
    assert _ids(coll.find({"k": {"$in": [1, 2]}, "c": 3})) == expected
    assert len(calls) == 60                         # only the two keys' documents
    calls.clear()
    assert _ids(coll.find({"busy.since": {"$lte": T0}})) == [5]
    assert len(calls) == 1                          # a range reads the present keys only
    calls.clear()
    coll.find({"c": 3})                             # no index on c: a scan, as before
    assert len(calls) > 400


def test_a_limited_cursor_copies_only_its_window(coll, monkeypatch):
    coll.insert_many([{"_id": i, "k": "x", "n": i} for i in range(500)])
    copies = []
    real = mm_collection.Collection._copy_only_fields

    def counting(self, doc, fields, container):
        copies.append(1)
        return real(self, doc, fields, container)

    monkeypatch.setattr(mm_collection.Collection, "_copy_only_fields", counting)
    page = coll.find({"k": "x"}, sort=[("n", -1)], skip=20, limit=10)
    assert [d["n"] for d in page] == list(range(479, 469, -1))
    assert len(copies) == 30                        # skipped ones and the page
    copies.clear()
    assert coll.find_one({"k": "x"}, sort=[("n", 1)])["n"] == 0
    assert len(copies) == 1
