"""The embedded engine refuses what MongoDB refuses (be.embedded.limits): documents
over 16 MiB and integers past int64, on insert and as the result of an update,
leaving the document as it was."""
import pytest
from pymongo.errors import DocumentTooLarge, WriteError

from be.embedded import EmbeddedEngine, limits

pytestmark = pytest.mark.embedded_only


@pytest.fixture
def coll():
    c = EmbeddedEngine().database("limits").things
    c.create_index("n")
    return c


def test_an_insert_over_16_mib_is_refused_and_nothing_stored(coll):
    with pytest.raises(DocumentTooLarge):
        coll.insert_one({"_id": "big", "text": "x" * limits.MAX_BSON})
    assert coll.find_one({"_id": "big"}) is None
    coll.insert_one({"_id": "fits", "text": "x" * (limits.MAX_BSON - 100)})
    assert coll.count_documents({}) == 1


BOUNDED = [
    {"t": "x" * 5000}, {"t": "é" * 5000}, {"t": "中" * 5000}, {"t": "😀" * 5000},
    {"t": "mixed ascii and 中文 " * 400}, {"t": "é中😀"}, {"键": "值", "ключ": "ж"},
    {"n": [1, 2.5, None, True, {"d": b"\x00" * 3000, "e": ["a", ["b", 2 ** 40]]}]},
    {"when": __import__("datetime").datetime(2026, 1, 2, 3, 4, 5), "o": __import__(
        "bson").ObjectId(), "big": 2 ** 63 - 1, "small": -2 ** 63, "i": __import__(
        "bson").Int64(7), "b": __import__("bson").Binary(b"xyz", 5)},
    {"list": list(range(1200)), "tuple": ("a", "b")},
]


@pytest.mark.parametrize("doc", BOUNDED, ids=range(len(BOUNDED)))
def test_a_documents_size_bound_is_never_below_its_bson_size(doc):
    import bson
    assert limits._bound(doc) >= len(bson.encode(doc))


def test_a_large_document_is_bounded_not_encoded_and_still_refused_past_the_limit(
        coll, monkeypatch):
    """A document whose texts pass 1 MiB is measured by a bound from its values'
    lengths; only one whose bound passes 16 MiB is encoded, and so refused exactly
    where MongoDB refuses it."""
    import bson
    encoded = []
    real_encode = bson.encode
    monkeypatch.setattr(limits.bson, "encode", lambda doc, *a, **k: (
        encoded.append(doc.get("_id")), real_encode(doc, *a, **k))[1])
    wide = "中" * 2_000_000  # 6 MB of UTF-8 in 2,000,000 characters
    coll.insert_one({"_id": "long", "a": wide, "b": wide})  # 12 MB: bounded, stored
    assert "long" not in encoded
    assert coll.find_one({"_id": "long"})["a"] == wide
    with pytest.raises(DocumentTooLarge):  # 18 MB: bound past the limit, then measured
        coll.insert_one({"_id": "too long", "a": wide, "b": wide, "c": wide})
    assert "too long" in encoded and coll.find_one({"_id": "too long"}) is None
    # 4 bytes a character bound: 5,000,000 characters of ASCII and one emoji would
    # bound at 20 MB, so it is measured (5 MB) and stored
    coll.insert_one({"_id": "emoji", "a": "x" * 5_000_000 + "😀"})
    assert "emoji" in encoded
    with pytest.raises(OverflowError):  # an int past int64 in a large document
        coll.insert_one({"_id": "int", "a": wide, "n": 2 ** 64})
    assert coll.find_one({"_id": "int"}) is None


def test_an_integer_past_int64_is_refused_on_insert_and_replace(coll):
    with pytest.raises(OverflowError):
        coll.insert_one({"_id": "o", "n": 2 ** 63})
    coll.insert_one({"_id": "o", "n": 2 ** 63 - 1})
    with pytest.raises(OverflowError):
        coll.replace_one({"_id": "o"}, {"n": -2 ** 63 - 1})
    assert coll.find_one({"_id": "o"})["n"] == 2 ** 63 - 1


@pytest.mark.parametrize("by_id", [True, False])
def test_an_inc_that_overflows_is_refused_and_the_whole_update_undone(coll, by_id):
    coll.insert_one({"_id": "u", "n": 2 ** 63 - 10, "ops": ["a"], "k": 1})
    where = {"_id": "u"} if by_id else {"k": 1}
    with pytest.raises(WriteError) as exc:
        coll.update_one(where, {"$inc": {"n": 10}, "$push": {"ops": "b"}, "$set": {"x": 1}})
    assert exc.value.code == 2
    assert coll.find_one({"_id": "u"}) == {"_id": "u", "n": 2 ** 63 - 10, "ops": ["a"], "k": 1}
    assert [d["_id"] for d in coll.find({"n": 2 ** 63 - 10})] == ["u"]  # index maps agree
    coll.update_one(where, {"$inc": {"n": 9}})
    assert coll.find_one({"_id": "u"})["n"] == 2 ** 63 - 1
    with pytest.raises(WriteError):
        coll.find_one_and_update({"_id": "u"}, {"$inc": {"n": 1}})
    assert coll.find_one({"_id": "u"})["n"] == 2 ** 63 - 1


@pytest.mark.parametrize("update", [
    {"$set": {"x": 2 ** 63}}, {"$max": {"n": 2 ** 70}}, {"$min": {"n": -2 ** 63 - 1}},
    {"$push": {"ops": {"v": [1, 2 ** 64]}}}, {"$inc": {"n": 2 ** 63}},
    {"$set": {"k": 2}, "$setOnInsert": {"y": 2 ** 63}},
])
def test_an_update_carrying_an_integer_past_int64_is_refused_whole(coll, update):
    # pymongo cannot encode the command: OverflowError before anything is sent
    coll.insert_one({"_id": "u", "n": 1, "ops": [], "k": 1})
    with pytest.raises(OverflowError):
        coll.update_one({"_id": "u"}, update)
    with pytest.raises(OverflowError):
        coll.find_one_and_update({"k": 1}, update)
    assert coll.find_one({"_id": "u"}) == {"_id": "u", "n": 1, "ops": [], "k": 1}
    coll.update_one({"_id": "u"}, {"$max": {"n": 2 ** 63 - 1}})  # the largest int64 is fine
    assert coll.find_one({"_id": "u"})["n"] == 2 ** 63 - 1


def test_an_update_whose_result_passes_16_mib_is_refused_and_undone(coll):
    coll.insert_one({"_id": "d", "a": "x" * (9 * 1024 * 1024)})
    with pytest.raises(WriteError) as exc:
        coll.update_one({"_id": "d"}, {"$set": {"b": "y" * (8 * 1024 * 1024)}})
    assert exc.value.code == 17419
    assert set(coll.find_one({"_id": "d"})) == {"_id", "a"}
