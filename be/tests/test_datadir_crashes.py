"""Every crash point of the crash matrix (be/tests/test_crash.py), on a data
folder: what the journal gives back after the crash is exactly what the engine
held at the crash, and the sweep's recovery finishes from there with a clean
audit. The matrix itself checks recovery in memory; this checks that the disk
hands recovery the same state (with each database call its own commit, as for
the sweeper and every caller outside a request, the finest-grained case)."""
import pytest

from be.audit import audit
from be.backend import Backend
from be.clock import ManualClock
from be.config import Settings
from be.tests import test_crash as matrix
from be.tests.support.datadirs import crash, dump
from be.tests.support.faults import crash_at

pytestmark = pytest.mark.embedded_only  # the embedded engine's data folder


def folder_ctx(path, clock):
    settings = Settings.from_env(mongodb_uri="", data_dir=str(path),
                                 password_method="pbkdf2:sha256:1000", pay_timeout_s=900,
                                 receive_timeout_s=604800, stuck_after_s=60,
                                 token_lifetime_s=10**7)
    return Backend(settings, clock=clock)


@pytest.mark.parametrize("name,k,mode", matrix.POINTS,
                         ids=[f"{n}-{k}-{m}" for n, k, m in matrix.POINTS])
def test_the_folder_gives_back_the_state_at_every_crash_point(tmp_path, name, k, mode):
    clock = ManualClock()
    ctx = folder_ctx(tmp_path, clock)
    w = matrix.world(ctx)
    oid = matrix.SCENARIOS[name]["prepare"](ctx, w)
    outcome, _ = crash_at(ctx, lambda: matrix.run_op(name, ctx, w, oid), k, mode)
    assert outcome == "crashed"
    ctx.engine.embedded.observer = None
    at_crash = dump(ctx.engine.embedded)
    crash(ctx.engine.embedded)

    ctx = folder_ctx(tmp_path, clock)
    try:
        assert dump(ctx.engine.embedded) == at_crash
        matrix.recover_like_the_system(ctx)
        violations = audit(ctx.db, settled=True)
        assert not violations, "\n".join(v.render() for v in violations)
    finally:
        ctx.close()
