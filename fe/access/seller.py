from urllib.parse import urljoin

from fe.access import book
from fe.access.auth import Auth
from fe.access.client import get, post


class Seller:
    def __init__(self, url_prefix, seller_id: str, password: str):
        self.root = url_prefix
        self.url_prefix = urljoin(url_prefix, "seller/")
        self.seller_id = seller_id
        self.password = password
        self.terminal = "my terminal"
        code, self.token = Auth(url_prefix).login(self.seller_id, self.password, self.terminal)
        assert code == 200

    def create_store(self, store_id):
        r = post(urljoin(self.url_prefix, "create_store"),
                 {"user_id": self.seller_id, "store_id": store_id}, self.token)
        return r.status_code

    def add_book(self, store_id: str, stock_level: int, book_info: book.Book) -> int:
        r = post(urljoin(self.url_prefix, "add_book"),
                 {"user_id": self.seller_id, "store_id": store_id,
                  "book_info": book_info.__dict__, "stock_level": stock_level}, self.token)
        return r.status_code

    def add_stock_level(self, seller_id: str, store_id: str, book_id: str, add_stock_num: int) -> int:
        r = post(urljoin(self.url_prefix, "add_stock_level"),
                 {"user_id": seller_id, "store_id": store_id, "book_id": book_id,
                  "add_stock_level": add_stock_num}, self.token)
        return r.status_code

    # managing listings (issue 12)

    def update_book(self, store_id: str, book_info: book.Book) -> int:
        """Replace the store's description of a listed book (and its price, if
        book_info has one)."""
        r = post(urljoin(self.url_prefix, "update_book"),
                 {"user_id": self.seller_id, "store_id": store_id,
                  "book_info": book_info.__dict__}, self.token)
        return r.status_code

    def _listing_call(self, path, store_id, book_id, **fields) -> int:
        r = post(urljoin(self.url_prefix, path),
                 {"user_id": self.seller_id, "store_id": store_id, "book_id": book_id, **fields},
                 self.token)
        return r.status_code

    def set_price(self, store_id: str, book_id: str, price: int) -> int:
        return self._listing_call("set_price", store_id, book_id, price=price)

    def set_stock_level(self, store_id: str, book_id: str, stock_level: int) -> int:
        return self._listing_call("set_stock_level", store_id, book_id, stock_level=stock_level)

    def unlist_book(self, store_id: str, book_id: str) -> int:
        return self._listing_call("unlist_book", store_id, book_id)

    def relist_book(self, store_id: str, book_id: str) -> int:
        return self._listing_call("relist_book", store_id, book_id)

    # order lifecycle and queries

    def ship(self, order_id: str) -> int:
        r = post(urljoin(self.url_prefix, "ship"),
                 {"user_id": self.seller_id, "order_id": order_id}, self.token)
        return r.status_code

    def orders(self, store_id=None, state=None, page=None, page_size=None) -> (int, dict):
        params = {"user_id": self.seller_id, "store_id": store_id, "state": state,
                  "page": page, "page_size": page_size}
        r = get(urljoin(self.url_prefix, "orders"),
                {k: v for k, v in params.items() if v is not None}, self.token)
        return r.status_code, r.json()

    def books(self, store_id, page=None, page_size=None, on_sale=None) -> (int, dict):
        params = {"user_id": self.seller_id, "store_id": store_id, "page": page,
                  "page_size": page_size,
                  "on_sale": None if on_sale is None else str(bool(on_sale)).lower()}
        r = get(urljoin(self.url_prefix, "books"),
                {k: v for k, v in params.items() if v is not None}, self.token)
        return r.status_code, r.json()

    def balance(self) -> (int, int):
        r = get(urljoin(self.root, "buyer/balance"), {"user_id": self.seller_id}, self.token)
        return r.status_code, r.json().get("balance")

    def order(self, order_id: str) -> (int, dict):
        r = get(urljoin(self.root, f"orders/{order_id}"), {"user_id": self.seller_id}, self.token)
        return r.status_code, r.json().get("order")
