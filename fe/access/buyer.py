from urllib.parse import urljoin

from fe.access.account import Account
from fe.access.client import post


class Buyer(Account):
    def __init__(self, url_prefix, user_id, password):
        super().__init__(url_prefix, user_id, password, "buyer")

    # idempotency_key: a repeat with the same key returns the first reply (doc/api.md)

    def new_order(self, store_id: str, book_id_and_count: [(str, int)],
                  idempotency_key=None) -> (int, str):
        books = [{"id": book_id, "count": count} for book_id, count in book_id_and_count]
        r = post(urljoin(self.url_prefix, "new_order"),
                 {"user_id": self.user_id, "store_id": store_id, "books": books}, self.token,
                 idempotency_key)
        return r.status_code, r.json().get("order_id")

    def payment(self, order_id: str, idempotency_key=None) -> int:
        r = post(urljoin(self.url_prefix, "payment"),
                 {"user_id": self.user_id, "password": self.password, "order_id": order_id},
                 self.token, idempotency_key)
        return r.status_code

    def add_funds(self, add_value: int, idempotency_key=None) -> int:
        r = post(urljoin(self.url_prefix, "add_funds"),
                 {"user_id": self.user_id, "password": self.password, "add_value": add_value},
                 self.token, idempotency_key)
        return r.status_code

    # order lifecycle and queries

    def receive(self, order_id: str) -> int:
        r = post(urljoin(self.url_prefix, "receive"),
                 {"user_id": self.user_id, "order_id": order_id}, self.token)
        return r.status_code

    def cancel_order(self, order_id: str) -> int:
        r = post(urljoin(self.url_prefix, "cancel_order"),
                 {"user_id": self.user_id, "order_id": order_id}, self.token)
        return r.status_code

    def orders(self, state=None, page=None, page_size=None, after=None) -> (int, dict):
        """One page of the buyer's orders; ``after`` is a reply's ``next``."""
        r = self.get("buyer/orders", state=state, page=page, page_size=page_size, after=after)
        return r.status_code, r.json()
