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


def post(url, body, token=None):
    headers = {"token": token} if token is not None else {}
    return session().post(url, json=body, headers=headers)


def get(url, params, token=None):
    headers = {"token": token} if token is not None else {}
    return session().get(url, params=params, headers=headers)
