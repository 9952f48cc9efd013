"""One requests.Session per thread: keep-alive connections, shared by every
access object, safe from many client threads."""
import threading

import requests

_local = threading.local()


def session():
    s = getattr(_local, "session", None)
    if s is None:
        s = _local.session = requests.Session()
    return s


def post(url, body, token=None, idempotency_key=None):
    """POST ``body``; ``idempotency_key`` (add_funds, new_order, payment) makes a
    repeat of the same request return the first reply instead of acting again."""
    headers = {"token": token} if token is not None else {}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return session().post(url, json=body, headers=headers)


def get(url, params, token=None):
    headers = {"token": token} if token is not None else {}
    return session().get(url, params=params, headers=headers)
