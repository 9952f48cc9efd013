"""/auth: accounts and sessions."""
from flask import Blueprint

from be.api import schemas as s
from be.api.common import backend, body, client_address, ok, token
from be.model import sessions, users

bp = Blueprint("auth", __name__, url_prefix="/auth")


@bp.post("/register")
def register():
    b = body(s.Credentials)
    users.register(backend(), b.user_id, b.password)
    return ok()


@bp.post("/unregister")
def unregister():
    b = body(s.Credentials)
    users.unregister(backend(), b.user_id, b.password, client_address())
    return ok()


@bp.post("/login")
def login():
    b = body(s.Login)
    return ok(token=sessions.login(backend(), b.user_id, b.password, b.terminal, client_address()))


@bp.post("/password")
def password():
    b = body(s.ChangePassword)
    users.change_password(backend(), b.user_id, b.oldPassword, b.newPassword,
                          client_address())
    return ok()


@bp.post("/logout")
def logout():
    b = body(s.UserOnly)
    sessions.logout(backend(), b.user_id, token())
    return ok()
