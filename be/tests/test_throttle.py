"""Login throttling (be.model.throttle): after repeated wrong passwords an account,
or a client address, gets 429 for a doubling delay, with nothing changed; unknown
accounts behave exactly like real ones, and a failure costs one full hash either
way. The clock is the test's."""
import pytest

from be import errors
from be.model import sessions, throttle, users
from be.tests.conftest import new_id

FREE = throttle.FREE["user"]


def outcome(call):
    try:
        call()
        return "ok"
    except errors.TooManyAttempts as exc:
        return ("429", exc.retry_after)
    except errors.AuthorizationFailed:
        return "401"


def attempts(ctx, user_id, password, n, address=None):
    return [outcome(lambda: sessions.login(ctx, user_id, password, "t", address))
            for _ in range(n)]


def test_an_account_closes_after_its_free_failures_for_a_doubling_delay(ctx, make_user):
    uid, pw, _ = make_user()
    sessions_before = ctx.db.sessions.count_documents({})
    assert attempts(ctx, uid, "wrong", FREE) == ["401"] * FREE
    # closed: the next attempt gets 429, the right password too, and nothing changes
    assert attempts(ctx, uid, pw, 2) == [("429", 1), ("429", 1)]
    assert ctx.db.sessions.count_documents({}) == sessions_before
    ctx.clock.advance(1)
    assert attempts(ctx, uid, "wrong", 1) == ["401"]            # open again: one more try
    assert attempts(ctx, uid, pw, 1) == [("429", 2)]            # ... and now 2 s
    ctx.clock.advance(2)
    assert attempts(ctx, uid, "wrong", 1) == ["401"]
    assert attempts(ctx, uid, "wrong", 1) == [("429", 4)]
    ctx.clock.advance(4)
    assert attempts(ctx, uid, pw, 1) == ["ok"]                  # the right password works
    assert attempts(ctx, uid, "wrong", FREE) == ["401"] * FREE  # and its failures are forgotten


def test_the_delay_stops_growing_at_fifteen_minutes(ctx, make_user):
    uid, pw, _ = make_user()
    for _ in range(FREE + 30):
        ctx.clock.advance(throttle.MAX_DELAY_S)
        attempts(ctx, uid, "wrong", 1)
    assert attempts(ctx, uid, pw, 1) == [("429", throttle.MAX_DELAY_S)]


def test_unknown_accounts_are_answered_exactly_like_real_ones(ctx, make_user, hash_checks):
    uid, pw, _ = make_user()
    sessions.login(ctx, uid, pw, "t")              # its right password is cached now
    ghost = new_id("ghost")
    hash_checks.clear()
    real = attempts(ctx, uid, "wrong", FREE + 1)
    real_hashes = len(hash_checks)
    hash_checks.clear()
    unknown = attempts(ctx, ghost, "wrong", FREE + 1)
    assert real == unknown == ["401"] * FREE + [("429", 1)]
    assert real_hashes == len(hash_checks) == FREE      # each failure one full hash, both
    doc = ctx.db.throttle.find_one({"_id": f"user:{ghost}"})
    assert doc["failures"] == FREE and doc["expires_at"] > ctx.clock.now()


def test_one_address_guessing_many_accounts_is_closed_but_not_other_addresses(ctx, make_user):
    uid, pw, _ = make_user()
    free = throttle.FREE["addr"]
    for n in range(free):                          # one failure on each of many accounts
        assert attempts(ctx, new_id("victim"), "guess", 1, "203.0.113.9") == ["401"]
    assert attempts(ctx, uid, pw, 1, "203.0.113.9") == [("429", 1)]
    assert attempts(ctx, uid, pw, 1, "198.51.100.7") == ["ok"]
    ctx.clock.advance(1)
    assert attempts(ctx, uid, pw, 1, "203.0.113.9") == ["ok"]
    # a success does not reset the address: its next failure closes it again, longer
    assert attempts(ctx, new_id("victim"), "guess", 1, "203.0.113.9") == ["401"]
    assert attempts(ctx, uid, pw, 1, "203.0.113.9") == [("429", 2)]


def test_loopback_addresses_are_throttled_per_account_only():
    assert throttle.keys("u", "127.0.0.1") == ["user:u"]
    assert throttle.keys("u", "::1") == ["user:u"]
    assert throttle.keys("u", "203.0.113.9") == ["user:u", "addr:203.0.113.9"]


@pytest.mark.parametrize("check", ["add_funds", "payment", "change_password", "unregister"])
def test_every_password_carrying_call_is_throttled(ctx, make_user, check):
    """add_funds and payment are checked at the edge with users.check_password; the
    account calls check inside the model: one choke point for all of them."""
    uid, pw, _ = make_user(funds=100)
    calls = {
        "add_funds": lambda p: users.check_password(ctx, uid, p, "203.0.113.9"),
        "payment": lambda p: users.check_password(ctx, uid, p, "203.0.113.9"),
        "change_password": lambda p: users.change_password(ctx, uid, p, p + "2", "203.0.113.9"),
        "unregister": lambda p: users.unregister(ctx, uid, p, "203.0.113.9"),
    }
    for _ in range(FREE):
        assert outcome(lambda: calls[check]("wrong")) == "401"
    user = ctx.db.users.find_one({"_id": uid})
    assert outcome(lambda: calls[check](pw)) == ("429", 1)
    assert ctx.db.users.find_one({"_id": uid}) == user
