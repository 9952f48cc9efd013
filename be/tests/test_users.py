"""Accounts, sessions and balances (be.model.users) on the embedded engine."""
import pytest

from be import errors
from be.model import sessions, users
from be.tests.conftest import new_id


def user_doc(ctx, user_id):
    return ctx.db.users.find_one({"_id": user_id})


def strings_in(value):
    """Every string anywhere inside a document (keys and values)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from strings_in(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from strings_in(v)


# ---------------------------------------------------------------- register

def test_register_creates_user_with_zero_balance(ctx):
    uid = new_id("u")
    users.register(ctx, uid, "secret")
    doc = user_doc(ctx, uid)
    assert doc["balance"] == 0 and doc["deposited"] == 0 and doc["withdrawn"] == 0
    assert doc["epoch"] == 0


def test_register_existing_user_is_512_and_keeps_first_password(ctx):
    uid = new_id("u")
    users.register(ctx, uid, "first")
    with pytest.raises(errors.UserExists) as exc:
        users.register(ctx, uid, "second")
    assert exc.value.code == 512
    sessions.login(ctx, uid, "first", "t")
    with pytest.raises(errors.AuthorizationFailed):
        sessions.login(ctx, uid, "second", "t")


def test_password_never_stored_in_clear(ctx):
    password = "pw-that-must-not-leak-1234"
    uid = new_id("u")
    users.register(ctx, uid, password)
    token = sessions.login(ctx, uid, password, "t")
    users.add_funds(ctx, uid, 100)
    users.change_password(ctx, uid, password, password + "-new")
    sessions.login(ctx, uid, password + "-new", "t")
    for name in ctx.db.list_collection_names():
        for doc in ctx.db[name].find({}):
            for text in strings_in(doc):
                assert password not in text, (name, doc)
                assert token not in text, (name, doc)  # sessions hold a digest only
    assert user_doc(ctx, uid)["password_hash"].startswith("pbkdf2:")


# ---------------------------------------------------------------- login / tokens

def test_login_wrong_password_or_unknown_user_is_401(ctx, make_user):
    uid, pw, _ = make_user()
    with pytest.raises(errors.AuthorizationFailed) as exc:
        sessions.login(ctx, uid, pw + "x", "t")
    assert exc.value.code == 401
    with pytest.raises(errors.AuthorizationFailed):
        sessions.login(ctx, uid + "_x", pw, "t")


def test_every_login_issues_a_new_token_and_earlier_ones_stay_valid(ctx, make_user):
    uid, pw, t1 = make_user()
    t2 = sessions.login(ctx, uid, pw, "terminal")      # same terminal
    t3 = sessions.login(ctx, uid, pw, "other terminal")
    assert len({t1, t2, t3}) == 3
    for t in (t1, t2, t3):
        assert sessions.authenticate(ctx, uid, t)["_id"] == uid


def test_authenticate_errors(ctx, make_user):
    uid, _, token = make_user()
    other, _, other_token = make_user("other")
    with pytest.raises(errors.NoSuchUser) as exc:
        sessions.authenticate(ctx, new_id("ghost"), token)
    assert exc.value.code == 511
    for bad in ("", None, "not-a-token", other_token):
        with pytest.raises(errors.AuthorizationFailed):
            sessions.authenticate(ctx, uid, bad)


def test_token_expires_after_lifetime(ctx, make_user):
    uid, _, token = make_user()
    lifetime = ctx.settings.token_lifetime_s
    ctx.clock.advance(lifetime - 1)
    sessions.authenticate(ctx, uid, token)
    ctx.clock.advance(1)
    with pytest.raises(errors.AuthorizationFailed):
        sessions.authenticate(ctx, uid, token)
    with pytest.raises(errors.AuthorizationFailed):
        sessions.logout(ctx, uid, token)
    # a fresh login works again
    fresh = sessions.login(ctx, uid, "pw_user", "t")
    sessions.authenticate(ctx, uid, fresh)


def test_logout_invalidates_only_that_session(ctx, make_user):
    uid, pw, t1 = make_user()
    t2 = sessions.login(ctx, uid, pw, "phone")
    sessions.logout(ctx, uid, t1)
    with pytest.raises(errors.AuthorizationFailed):
        sessions.authenticate(ctx, uid, t1)
    sessions.authenticate(ctx, uid, t2)
    with pytest.raises(errors.AuthorizationFailed):  # twice is 401
        sessions.logout(ctx, uid, t1)


def test_logout_wrong_user_or_token_is_401_and_keeps_session(ctx, make_user):
    uid, _, token = make_user()
    other, _, other_token = make_user("other")
    with pytest.raises(errors.AuthorizationFailed):
        sessions.logout(ctx, other, token)              # someone else's token
    with pytest.raises(errors.AuthorizationFailed):
        sessions.logout(ctx, new_id("ghost"), token)    # unknown user: 401, not 511
    with pytest.raises(errors.AuthorizationFailed):
        sessions.logout(ctx, uid, "bogus")
    sessions.authenticate(ctx, uid, token)
    sessions.authenticate(ctx, other, other_token)


# ---------------------------------------------------------------- password / unregister

def test_change_password_invalidates_every_token(ctx, make_user):
    uid, pw, t1 = make_user()
    t2 = sessions.login(ctx, uid, pw, "phone")
    epoch = user_doc(ctx, uid)["epoch"]
    users.change_password(ctx, uid, pw, "new-pw")
    assert user_doc(ctx, uid)["epoch"] == epoch + 1
    for t in (t1, t2):
        with pytest.raises(errors.AuthorizationFailed):
            sessions.authenticate(ctx, uid, t)
    with pytest.raises(errors.AuthorizationFailed):
        sessions.login(ctx, uid, pw, "t")
    t3 = sessions.login(ctx, uid, "new-pw", "t")
    sessions.authenticate(ctx, uid, t3)


def test_tokens_retired_by_epoch_even_if_session_cleanup_never_ran(ctx, make_user):
    uid, pw, token = make_user()
    saved = list(ctx.db.sessions.find({"user_id": uid}))
    users.change_password(ctx, uid, pw, "new-pw")
    ctx.db.sessions.insert_many(saved)  # as if delete_many had not run
    with pytest.raises(errors.AuthorizationFailed):
        sessions.authenticate(ctx, uid, token)


def test_change_password_wrong_old_or_unknown_user_is_401(ctx, make_user):
    uid, pw, token = make_user()
    with pytest.raises(errors.AuthorizationFailed):
        users.change_password(ctx, uid, pw + "x", "new")
    with pytest.raises(errors.AuthorizationFailed):
        users.change_password(ctx, new_id("ghost"), pw, "new")
    sessions.authenticate(ctx, uid, token)  # nothing changed
    sessions.login(ctx, uid, pw, "t")


def test_unregister_invalidates_tokens_and_keeps_a_tombstone(ctx, make_user):
    uid, pw, token = make_user(funds=500)
    users.unregister(ctx, uid, pw)
    with pytest.raises(errors.NoSuchUser):
        sessions.authenticate(ctx, uid, token)
    with pytest.raises(errors.AuthorizationFailed):
        sessions.login(ctx, uid, pw, "t")
    with pytest.raises(errors.AuthorizationFailed):  # twice
        users.unregister(ctx, uid, pw)
    with pytest.raises(errors.AuthorizationFailed):  # what the edge checks for add_funds
        users.check_password(ctx, uid, pw)
    # the id is not reused and the money is kept on the tombstone
    with pytest.raises(errors.UserExists):
        users.register(ctx, uid, pw)
    doc = user_doc(ctx, uid)
    assert doc["balance"] == 500 and "password_hash" not in doc
    assert ctx.db.sessions.count_documents({"user_id": uid}) == 0


def test_unregister_wrong_password_or_unknown_user_is_401(ctx, make_user):
    uid, pw, token = make_user()
    with pytest.raises(errors.AuthorizationFailed):
        users.unregister(ctx, uid, pw + "x")
    with pytest.raises(errors.AuthorizationFailed):
        users.unregister(ctx, new_id("ghost"), pw)
    sessions.authenticate(ctx, uid, token)


# ---------------------------------------------------------------- funds

def test_add_funds_and_withdraw(ctx, make_user):
    uid, pw, token = make_user()
    users.add_funds(ctx, uid, 1000)
    users.add_funds(ctx, uid, -300)
    users.add_funds(ctx, uid, 0)
    doc = user_doc(ctx, uid)
    assert doc["balance"] == 700
    assert doc["deposited"] == 1000 and doc["withdrawn"] == 300
    assert users.own_balance(ctx, uid) == 700


def test_withdrawal_never_below_zero(ctx, make_user):
    uid, pw, token = make_user(funds=100)
    with pytest.raises(errors.FundsTooLow) as exc:
        users.add_funds(ctx, uid, -101)
    assert exc.value.code == 519
    assert users.own_balance(ctx, uid) == 100
    users.add_funds(ctx, uid, -100)  # down to exactly zero is fine
    assert users.own_balance(ctx, uid) == 0
    with pytest.raises(errors.FundsTooLow):
        users.add_funds(ctx, uid, -1)
    doc = user_doc(ctx, uid)
    assert (doc["balance"], doc["deposited"], doc["withdrawn"]) == (0, 100, 100)


def test_add_funds_wrong_password_or_unknown_user_is_401(ctx, make_user):
    uid, pw, token = make_user(funds=50)
    with pytest.raises(errors.AuthorizationFailed):   # the edge checks before add_funds
        users.check_password(ctx, uid, pw + "x")
    with pytest.raises(errors.AuthorizationFailed):
        users.check_password(ctx, new_id("ghost"), pw)
    assert users.own_balance(ctx, uid) == 50


def test_balance_cap_is_refused_without_change(ctx, make_user):
    uid, pw, token = make_user(funds=10)
    with pytest.raises(errors.BadRequest):
        users.add_funds(ctx, uid, users.MAX_BALANCE)
    assert users.own_balance(ctx, uid) == 10


def test_own_balance_needs_a_valid_token(ctx, make_user):
    """The edge resolves the token before the model reads the balance."""
    uid, _, token = make_user(funds=10)
    with pytest.raises(errors.AuthorizationFailed):
        sessions.authenticate(ctx, uid, "bogus")
    assert users.own_balance(ctx, sessions.authenticate(ctx, uid, token)["_id"]) == 10


def test_tokens_and_password_changes_hold_across_processes(ctx, make_user):
    """Two server processes share the database but nothing in memory (each has
    its own password cache)."""
    from be.backend import Backend
    other = Backend(ctx.settings, clock=ctx.clock, engine=ctx.engine)
    uid, pw, token = make_user(funds=10)
    sessions.authenticate(other, uid, token)               # issued here, valid there
    users.check_password(other, uid, pw)            # warms the other cache
    users.change_password(ctx, uid, pw, "new-pw")
    with pytest.raises(errors.AuthorizationFailed):     # the other cache is stale now
        users.check_password(other, uid, pw)
    with pytest.raises(errors.AuthorizationFailed):
        sessions.authenticate(other, uid, token)
    users.check_password(other, uid, "new-pw")
    users.add_funds(other, uid, 1)
    new_token = sessions.login(other, uid, "new-pw", "t")
    assert users.own_balance(other, sessions.authenticate(other, uid, new_token)["_id"]) == 11


def test_sign_in_and_password_checks_never_read_the_marker_array(ctx, make_user):
    """``ops`` grows with the orders in flight; the checks every request makes read
    only the fields they need."""
    uid, pw, token = make_user()
    ctx.db.users.update_one({"_id": uid}, {"$set": {"ops": [f"o{n}:credit" for n in range(500)]}})
    assert set(sessions.authenticate(ctx, uid, token)) == {"_id", "epoch"}
    assert set(users.check_password(ctx, uid, pw)) == {"_id", "password_hash", "epoch"}
