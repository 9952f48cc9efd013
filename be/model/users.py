"""Accounts, sessions and balances.

Sessions (tokens) are in ``be.model.sessions``; the functions here that act for
a signed-in user take its id, already authenticated at the HTTP edge.
A user document holds the password hash, the balance in cents and the running
totals deposited/withdrawn (the audit checks money against them). ``epoch``
goes up when the password changes or the account closes: every session records
the epoch it was issued under, so one atomic update on the user retires all of
its tokens in every process, even if the session clean-up after it never runs.
Closed accounts stay as tombstones: their money is kept, their id not reused.
"""
from pymongo.errors import DuplicateKeyError

from be import errors
from be.model import throttle

MAX_BALANCE = 10**15  # cents; keeps every sum far inside int64 (9.2 * 10**18)
# What each check reads of a user: never the ``ops`` marker array, which grows
# with the orders in flight and is read only by the effects' own guarded updates.
SIGN_IN = {"epoch": 1, "closed_at": 1}
PASSWORD = {"password_hash": 1, "epoch": 1, "closed_at": 1}


def register(ctx, user_id, password):
    doc = {
        "_id": user_id,
        "password_hash": ctx.passwords.hash(password),
        "balance": 0,
        "deposited": 0,
        "withdrawn": 0,
        "epoch": 0,
        "created_at": ctx.clock.now(),
    }
    try:
        ctx.db.users.insert_one(doc)
    except DuplicateKeyError:
        raise errors.UserExists(user_id)


def _user(ctx, user_id, projection=None):
    user = ctx.db.users.find_one({"_id": user_id}, projection)
    if user is None or user.get("closed_at") is not None:
        return None
    return user


def check_password(ctx, user_id, password, address=None):
    """The open user whose password this is, or 401; 429 while the account or the
    client ``address`` is throttled after repeated failures (be.model.throttle).
    Unknown users cost the same hash as known ones, so timing tells nothing."""
    attempt = throttle.keys(user_id, address)
    counters = throttle.check(ctx, attempt)
    user = _user(ctx, user_id, PASSWORD)
    if not ctx.passwords.verify(user_id, user and user.get("password_hash"), password):
        throttle.failed(ctx, attempt)
        raise errors.AuthorizationFailed()
    throttle.succeeded(ctx, counters)
    return user


def change_password(ctx, user_id, old_password, new_password, address=None):
    user = check_password(ctx, user_id, old_password, address)
    result = ctx.db.users.update_one(
        {"_id": user_id, "password_hash": user["password_hash"], "closed_at": None},
        {"$set": {"password_hash": ctx.passwords.hash(new_password)}, "$inc": {"epoch": 1}})
    if result.matched_count != 1:  # changed or closed concurrently
        raise errors.AuthorizationFailed()
    ctx.db.sessions.delete_many({"user_id": user_id})  # clean-up; epoch already retired them


def unregister(ctx, user_id, password, address=None):
    user = check_password(ctx, user_id, password, address)
    result = ctx.db.users.update_one(
        {"_id": user_id, "password_hash": user["password_hash"], "closed_at": None},
        {"$set": {"closed_at": ctx.clock.now()}, "$unset": {"password_hash": ""},
         "$inc": {"epoch": 1}})
    if result.matched_count != 1:
        raise errors.AuthorizationFailed()
    ctx.db.sessions.delete_many({"user_id": user_id})


def add_funds(ctx, user_id, add_value):
    """Deposit (positive) or withdraw (negative) cents; never below zero. The caller
    has checked the password."""
    if add_value >= 0:
        guard = {"_id": user_id, "balance": {"$lte": MAX_BALANCE - add_value}}
        change = {"balance": add_value, "deposited": add_value}
    else:
        guard = {"_id": user_id, "balance": {"$gte": -add_value}}
        change = {"balance": add_value, "withdrawn": -add_value}
    guard["closed_at"] = None
    if ctx.db.users.update_one(guard, {"$inc": change}).matched_count != 1:
        if add_value >= 0:
            raise errors.BadRequest(f"add_value would take the balance over {MAX_BALANCE}")
        raise errors.FundsTooLow(user_id)


def open_user(ctx, user_id, projection=None):
    """The user's document if the account exists and is open, else None."""
    return _user(ctx, user_id, projection)


def own_balance(ctx, user_id):
    return _user(ctx, user_id, {"balance": 1})["balance"]
