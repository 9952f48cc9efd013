"""Sessions: the tokens that ``/auth/login`` issues and every signed-in call sends.

The HTTP edge (``be.api.common.signed_in``) resolves a request's token to its user
with ``authenticate`` once per request; the rest of the model only ever sees the
user id. Only a SHA-256 digest of each token is stored, so a database dump holds no
live token. A session records the user's ``epoch`` when it was issued: a password
change or closing the account bumps the epoch and so retires every token at once.
"""
import hashlib
import secrets
from datetime import timedelta

from be import errors
from be.model import users


def _token_key(token):
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def login(ctx, user_id, password, terminal, address=None):
    """A new token for ``user_id`` (401 on a wrong password or unknown user; 429
    while throttled, see be.model.throttle)."""
    user = users.check_password(ctx, user_id, password, address)
    token = secrets.token_urlsafe(32)
    now = ctx.clock.now()
    ctx.db.sessions.insert_one({
        "_id": _token_key(token),
        "user_id": user_id,
        "terminal": terminal,
        "epoch": user["epoch"],
        "created_at": now,
        "expires_at": now + timedelta(seconds=ctx.settings.token_lifetime_s),
    })
    return token


def authenticate(ctx, user_id, token):
    """The user that ``token`` was issued to, if it is ``user_id``: 511 when no such
    user exists, 401 when the token is not a live session of that user."""
    user = users.open_user(ctx, user_id, users.SIGN_IN)
    if user is None:
        raise errors.NoSuchUser(user_id)
    session = ctx.db.sessions.find_one({"_id": _token_key(token or "")}) if token else None
    if (session is None or session["user_id"] != user_id
            or session["epoch"] != user["epoch"]
            or session["expires_at"] <= ctx.clock.now()):
        raise errors.AuthorizationFailed()
    return user


def logout(ctx, user_id, token):
    """End the session ``token`` of ``user_id`` (401 for anything but a live one)."""
    try:
        authenticate(ctx, user_id, token)
    except errors.NoSuchUser:
        raise errors.AuthorizationFailed()
    ctx.db.sessions.delete_one({"_id": _token_key(token), "user_id": user_id})
