"""GenBook, as in the classic course suite: a new seller with one store, stocked
with books from fe.access.book.BookDB, and a buy list for a buyer to order.
Shop (a GenBook store plus a funded buyer) and manual_clock serve the order
lifecycle tests."""
import contextlib
import random
import uuid

from be.clock import ManualClock

from fe import conf
from fe.access import book
from fe.access.new_buyer import register_new_buyer
from fe.access.new_seller import register_new_seller


class GenBook:
    def __init__(self, seller_id, store_id, seed=0):
        self.seller_id = seller_id
        self.store_id = store_id
        self.password = self.seller_id
        self.seller = register_new_seller(self.seller_id, self.password)
        self.rng = random.Random(seed)  # deterministic choices for a given seed
        code = self.seller.create_store(store_id)
        assert code == 200
        self.__init_book_list__()

    def __init_book_list__(self):
        self.buy_book_info_list = []
        self.buy_book_id_list = []
        self.stock_levels = {}

    def gen(self, non_exist_book_id: bool, low_stock_level, max_book_count: int = 100):
        """Add 1..max_book_count books to the store and return (ok, [(book_id, count)]).
        ``non_exist_book_id`` makes every id in the buy list unknown to the store;
        ``low_stock_level`` makes every count one more than the stock."""
        self.__init_book_list__()
        book_db = book.BookDB(conf.Use_Large_DB)
        rows = book_db.get_book_count()
        start = 0
        if rows > max_book_count:
            start = self.rng.randint(0, rows - max_book_count)
        size = self.rng.randint(1, max_book_count)
        books = book_db.get_book_info(start, size)
        for bk in books:
            if low_stock_level:
                stock_level = self.rng.randint(0, 100)
            else:
                stock_level = self.rng.randint(2, 100)
            code = self.seller.add_book(self.store_id, stock_level, bk)
            assert code == 200
            self.stock_levels[bk.id] = stock_level

        for bk in books:
            stock_level = self.stock_levels[bk.id]
            buy_num = self.rng.randint(1, stock_level) if stock_level > 1 else 1
            if non_exist_book_id:
                bk.id = bk.id + "_x"
            if low_stock_level:
                buy_num = stock_level + 1
            self.buy_book_info_list.append((bk, buy_num))

        for bk, num in self.buy_book_info_list:
            self.buy_book_id_list.append((bk.id, num))
        return True, self.buy_book_id_list

    def total_price(self):
        """What the buy list costs, in cents (a book without a price is free)."""
        return sum((bk.price or 0) * num for bk, num in self.buy_book_info_list)

    def stock(self):
        """{book_id: stock_level} as the seller's store reports it now."""
        levels, page = {}, 1
        while True:
            code, body = self.seller.books(self.store_id, page=page, page_size=100)
            assert code == 200
            levels.update({b["book_id"]: b["stock_level"] for b in body["books"]})
            if page * 100 >= body["total"]:
                return levels
            page += 1


class Shop:
    """A GenBook store with ``n_books`` books and a funded buyer: the setting of
    the order lifecycle tests, with helpers that read state back over HTTP."""

    def __init__(self, prefix, funds=10_000_000, n_books=3, seed=0):
        uid = uuid.uuid4().hex[:12]
        self.store_id = f"{prefix}_store_{uid}"
        self.gen = GenBook(f"{prefix}_seller_{uid}", self.store_id, seed=seed)
        ok, self.buy_list = self.gen.gen(non_exist_book_id=False, low_stock_level=False,
                                         max_book_count=n_books)
        assert ok
        self.seller = self.gen.seller
        for book_id in self.gen.stock_levels:  # room for many orders of the buy list
            assert self.seller.add_stock_level(self.seller.seller_id, self.store_id,
                                               book_id, 1000) == 200
            self.gen.stock_levels[book_id] += 1000
        self.buyer = register_new_buyer(f"{prefix}_buyer_{uid}", "pw_" + uid)
        if funds:
            assert self.buyer.add_funds(funds) == 200
        self.total = self.gen.total_price()

    def order(self, lines=None):
        code, order_id = self.buyer.new_order(self.store_id, lines or self.buy_list)
        assert code == 200
        return order_id

    def read(self, order_id):
        code, order = self.buyer.order(order_id)
        assert code == 200
        return order

    def balances(self):
        (c1, buyer), (c2, seller) = self.buyer.balance(), self.seller.balance()
        assert c1 == c2 == 200
        return buyer, seller

    def snapshot(self, order_id):
        """Everything a refused call must leave as it was."""
        return self.read(order_id), self.balances(), self.gen.stock()


@contextlib.contextmanager
def manual_clock(backend):
    """Give the in-process server a ManualClock for the block (tests move time
    forward with ``advance`` instead of sleeping), then put the real one back."""
    saved = backend.clock
    backend.clock = ManualClock()
    try:
        yield backend.clock
    finally:
        backend.clock = saved
