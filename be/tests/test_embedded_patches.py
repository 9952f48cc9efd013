"""The embedded engine's one table of mongomock patches (be.embedded.patches).

The engine replaces 23 private mongomock attributes. The table must list every
one of them (a replacement outside it would escape the start-up checks), start-up
must refuse a mongomock other than the tested one or one missing a replaced
attribute, and requirements.txt must pin the tested version.
"""
import json
import os
import re
import subprocess
import sys

import mongomock
import pytest
from mongomock import collection as mm_collection

from be.embedded import EmbeddedEngine, patches

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Run in a fresh interpreter, where mongomock is still unpatched: every module
# and class attribute of mongomock before and after an engine starts and serves
# each kind of call the replacements take, and the table's (target, name) pairs.
_DIFF = r"""
import json, sys, types
import mongomock, pymongo

def attributes():
    found = {}
    for modname, module in list(sys.modules.items()):
        if modname.split(".")[0] != "mongomock" or not isinstance(module, types.ModuleType):
            continue
        for name, value in list(vars(module).items()):
            found[(modname, name)] = value
            if isinstance(value, type) and value.__module__ == modname:
                for attr, member in list(vars(value).items()):
                    found[(modname + "." + value.__name__, attr)] = member
    return found

before = attributes()
from be.embedded import EmbeddedEngine, patches
assert attributes().keys() == before.keys(), "importing be.embedded changed mongomock"
coll = EmbeddedEngine().database("d")["c"]
coll.create_index([("k", 1)], unique=True)
coll.insert_many([{"_id": i, "k": i, "n": 0} for i in range(5)])
coll.update_one({"_id": 1}, {"$inc": {"n": 1}})
coll.update_many({"n": 0}, {"$set": {"m": [1]}})
coll.find_one_and_update({"_id": 2}, {"$set": {"n": 2}}, {"n": 1})
coll.bulk_write([pymongo.UpdateOne({"_id": 3}, {"$inc": {"n": 1}}),
                 pymongo.DeleteOne({"_id": 4})])
coll.find({"k": {"$in": [1, 2]}}, {"k": 1}, sort=[("n", -1)], limit=2)
coll.find_one({"_id": {"$in": [0, 1]}})
coll.delete_many({"k": {"$gte": 3}})
coll.drop()
after = attributes()
changed = sorted(list(key) for key in before.keys() | after.keys()
                 if before.get(key, before) is not after.get(key, before))
print(json.dumps({"changed": changed,
                  "table": sorted([p.target, p.name] for p in patches.PATCHES)}))
"""


def test_the_table_lists_every_mongomock_attribute_the_engine_replaces():
    proc = subprocess.run([sys.executable, "-c", _DIFF], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert found["changed"] == found["table"]
    assert len(found["table"]) == len(patches.PATCHES) == 24


def test_after_start_up_each_listed_attribute_is_its_replacement():
    EmbeddedEngine()
    replacements = {id(p.replacement) for p in patches.PATCHES}
    assert len({(p.target, p.name) for p in patches.PATCHES}) == len(patches.PATCHES)
    assert len(replacements) == len(patches.PATCHES)  # each keeps its own original
    for patch in patches.PATCHES:
        target = patches.resolve(patch.target)
        assert getattr(target, patch.name) is patch.replacement, patch
        assert id(patch.replacement.original) not in replacements, patch
        assert patch.why


def test_patches_are_applied_once():
    EmbeddedEngine()
    originals = [p.replacement.original for p in patches.PATCHES]
    patches.apply()
    EmbeddedEngine()
    assert [p.replacement.original for p in patches.PATCHES] == originals
    for patch in patches.PATCHES:
        assert getattr(patches.resolve(patch.target), patch.name) is patch.replacement


def test_start_up_refuses_another_mongomock_version(monkeypatch):
    monkeypatch.setattr(mongomock, "__version__", "4.1.2")
    with pytest.raises(RuntimeError) as refused:
        EmbeddedEngine()
    assert str(refused.value) == (
        f"bookstore's embedded engine was tested with mongomock {patches.TESTED_MONGOMOCK}; "
        "found 4.1.2: install the version pinned in requirements.txt "
        "(pip install -r requirements.txt)")


def test_start_up_refuses_a_mongomock_missing_a_replaced_attribute(monkeypatch):
    monkeypatch.delattr(mm_collection.Collection, "_iter_documents")
    with pytest.raises(RuntimeError) as refused:
        EmbeddedEngine()
    assert str(refused.value).startswith(
        "mongomock.collection.Collection._iter_documents no longer exists in mongomock "
        f"{patches.TESTED_MONGOMOCK}, and bookstore's embedded engine patches it "
        "(be/embedded/patches.py)")


def test_start_up_refuses_a_mongomock_missing_a_patched_class(monkeypatch):
    monkeypatch.delattr(mm_collection, "BulkOperationBuilder")
    monkeypatch.delattr(mongomock.store.CollectionStore, "drop")
    with pytest.raises(RuntimeError) as refused:
        EmbeddedEngine()
    assert str(refused.value).startswith(
        "mongomock.store.CollectionStore.drop, mongomock.collection.BulkOperationBuilder "
        "no longer exist in mongomock")


def test_requirements_pin_the_tested_mongomock():
    with open(os.path.join(ROOT, "requirements.txt")) as f:
        specs = re.findall(r"^mongomock\b\s*(.*?)\s*$", f.read(), re.M)
    assert specs == [f"=={patches.TESTED_MONGOMOCK}"]
