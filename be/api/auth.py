"""/auth: accounts and sessions."""
from flask import Blueprint

from be.api import schemas as s
from be.api.common import backend, client_address, ok, parsed, token
from be.model import sessions, users

bp = Blueprint("auth", __name__, url_prefix="/auth")


@bp.post("/register")
@parsed(s.Credentials)
def register(b):
    users.register(backend(), b.user_id, b.password)
    return ok()


@bp.post("/unregister")
@parsed(s.Credentials)
def unregister(b):
    users.unregister(backend(), b.user_id, b.password, client_address())
    return ok()


@bp.post("/login")
@parsed(s.Login)
def login(b):
    return ok(token=sessions.login(backend(), b.user_id, b.password, b.terminal, client_address()))


@bp.post("/password")
@parsed(s.ChangePassword)
def password(b):
    users.change_password(backend(), b.user_id, b.oldPassword, b.newPassword,
                          client_address())
    return ok()


@bp.post("/logout")
@parsed(s.UserOnly)
def logout(b):
    sessions.logout(backend(), b.user_id, token())
    return ok()
