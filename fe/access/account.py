"""What a buyer's and a seller's client share: a logged-in session (the token
from ``/auth/login``) and the reads any signed-in user makes."""
from urllib.parse import urljoin

from fe.access.auth import Auth
from fe.access.client import get


class Account:
    def __init__(self, url_prefix, user_id, password, area, token=None):
        """Logs in, unless given the ``token`` of a login already made."""
        self.root = url_prefix
        self.url_prefix = urljoin(url_prefix, area + "/")
        self.user_id = user_id
        self.password = password
        self.terminal = "my terminal"
        if token is None:
            code, token = Auth(url_prefix).login(user_id, password, self.terminal)
            assert code == 200
        self.token = token

    def get(self, path, **params):
        """GET ``path`` (below the root) as this user; parameters that are None are left out."""
        params = {"user_id": self.user_id, **params}
        return get(urljoin(self.root, path),
                   {k: v for k, v in params.items() if v is not None}, self.token)

    def balance(self) -> (int, int):
        r = self.get("buyer/balance")
        return r.status_code, r.json().get("balance")

    def order(self, order_id: str) -> (int, dict):
        r = self.get(f"orders/{order_id}")
        return r.status_code, r.json().get("order")
