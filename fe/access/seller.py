from urllib.parse import urljoin

from fe.access import book
from fe.access.account import Account
from fe.access.client import post


class Seller(Account):
    def __init__(self, url_prefix, seller_id: str, password: str, token=None):
        super().__init__(url_prefix, seller_id, password, "seller", token)

    @property
    def seller_id(self):
        return self.user_id

    @seller_id.setter
    def seller_id(self, value):
        self.user_id = value

    def create_store(self, store_id):
        r = post(urljoin(self.url_prefix, "create_store"),
                 {"user_id": self.seller_id, "store_id": store_id}, self.token)
        return r.status_code

    def add_book(self, store_id: str, stock_level: int, book_info: book.Book) -> int:
        r = post(urljoin(self.url_prefix, "add_book"),
                 {"user_id": self.seller_id, "store_id": store_id,
                  "book_info": book_info.__dict__, "stock_level": stock_level}, self.token)
        return r.status_code

    def add_books(self, store_id: str, books) -> (int, dict):
        """List up to 100 books in one request: ``books`` is a list of
        (book_info, stock_level), book_info a book.Book or a dict. The reply has
        one result per book (``books``: book_id, code, message), in order."""
        items = [{"book_info": info if isinstance(info, dict) else info.__dict__,
                  "stock_level": stock_level} for info, stock_level in books]
        r = post(urljoin(self.url_prefix, "add_books"),
                 {"user_id": self.seller_id, "store_id": store_id, "books": items}, self.token)
        return r.status_code, r.json()

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

    def orders(self, store_id=None, state=None, page=None, page_size=None,
               after=None) -> (int, dict):
        """One page of the seller's orders; ``after`` is a reply's ``next``."""
        r = self.get("seller/orders", store_id=store_id, state=state, page=page,
                     page_size=page_size, after=after)
        return r.status_code, r.json()

    def book_ids(self, store_id, after=None, page_size=None) -> (int, dict):
        """One page of the ids the store lists (``book_ids``, ``next``)."""
        r = self.get("seller/book_ids", store_id=store_id, after=after, page_size=page_size)
        return r.status_code, r.json()

    def books(self, store_id, page=None, page_size=None, after=None, on_sale=None) -> (int, dict):
        """One page of the store's listings; ``after`` is a reply's ``next``."""
        r = self.get("seller/books", store_id=store_id, page=page, page_size=page_size,
                     after=after, on_sale=None if on_sale is None else str(bool(on_sale)).lower())
        return r.status_code, r.json()
