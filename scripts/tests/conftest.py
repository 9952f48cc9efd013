"""The import tests talk to a real server: reuse fe's in-process one (waitress on a
free port over a fresh embedded database; it points fe.conf.URL at itself)."""
from fe.conftest import backend, server  # noqa: F401
