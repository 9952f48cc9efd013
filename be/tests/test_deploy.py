"""The compose recipe (compose.yaml, Dockerfile) starts what this checkout
provides: a replica set (the watcher's change streams need one), and the API and
watcher through the package's console commands, with flags the server accepts and
a URI naming that replica set. (Docker itself is not run here.)"""
import pathlib
import re

import pytest
import yaml

from be import server

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]


def console_scripts():
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def test_mongo_is_a_replica_set_the_others_name(compose):
    command = compose["mongo"]["command"]
    replica_set = command[command.index("--replSet") + 1]
    assert f"_id: '{replica_set}'" in " ".join(compose["mongo"]["healthcheck"]["test"])
    for name in ("api", "watcher"):
        uri = compose[name]["environment"]["MONGODB_URI"]
        assert uri.startswith("mongodb://mongo:") and f"replicaSet={replica_set}" in uri
        assert compose[name]["depends_on"]["mongo"]["condition"] == "service_healthy"


def test_commands_are_the_packages_and_their_flags_parse(compose):
    scripts = console_scripts()
    assert compose["api"]["command"][0] == "bookstore-server" in scripts
    assert compose["watcher"]["command"] == ["bookstore-watcher"]
    assert "bookstore-watcher" in scripts
    args = server.parse_args(compose["api"]["command"][1:])
    assert (args.host, args.port) == ("0.0.0.0", 5000)
    assert compose["api"]["ports"] == [f"{args.port}:{args.port}"]
    cmd = re.search(r"^CMD (\[.*\])$", (ROOT / "Dockerfile").read_text(), re.M).group(1)
    assert yaml.safe_load(cmd) == compose["api"]["command"]


def test_the_api_container_is_probed_on_health(compose):
    probe = " ".join(compose["api"]["healthcheck"]["test"])
    assert "http://127.0.0.1:5000/health" in probe
