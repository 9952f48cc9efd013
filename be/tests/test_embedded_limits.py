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
