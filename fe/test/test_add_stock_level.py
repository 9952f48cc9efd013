import uuid

import pytest

from fe import conf
from fe.access import book
from fe.access.new_seller import register_new_seller


class TestAddStockLevel:
    @pytest.fixture(autouse=True)
    def pre_run_initialization(self):
        self.user_id = "test_add_book_stock_level1_user_{}".format(uuid.uuid1())
        self.store_id = "test_add_book_stock_level1_store_{}".format(uuid.uuid1())
        self.password = self.user_id
        self.seller = register_new_seller(self.user_id, self.password)

        code = self.seller.create_store(self.store_id)
        assert code == 200
        book_db = book.BookDB(conf.Use_Large_DB)
        self.books = book_db.get_book_info(0, 5)
        for bk in self.books:
            code = self.seller.add_book(self.store_id, 0, bk)
            assert code == 200
        yield

    def stock(self):
        code, body = self.seller.books(self.store_id)
        assert code == 200
        return {b["book_id"]: b["stock_level"] for b in body["books"]}

    def test_error_user_id(self):
        for b in self.books:
            book_id = b.id
            code = self.seller.add_stock_level(self.user_id + "_x", self.store_id, book_id, 10)
            assert code == 511
        assert set(self.stock().values()) == {0}

    def test_error_store_id(self):
        for b in self.books:
            book_id = b.id
            code = self.seller.add_stock_level(self.user_id, self.store_id + "_x", book_id, 10)
            assert code == 513
        assert set(self.stock().values()) == {0}

    def test_error_book_id(self):
        for b in self.books:
            book_id = b.id
            code = self.seller.add_stock_level(self.user_id, self.store_id, book_id + "_x", 10)
            assert code == 515
        assert set(self.stock().values()) == {0}

    def test_error_another_sellers_store(self):
        other = register_new_seller(self.user_id + "_other", self.password)
        for b in self.books:
            code = other.add_stock_level(other.seller_id, self.store_id, b.id, 10)
            assert code == 401
        assert set(self.stock().values()) == {0}

    def test_ok(self):
        for n, b in enumerate(self.books):
            book_id = b.id
            code = self.seller.add_stock_level(self.user_id, self.store_id, book_id, 10 + n)
            assert code == 200
        code = self.seller.add_stock_level(self.user_id, self.store_id, self.books[0].id, 5)
        assert code == 200
        expected = {b.id: 10 + n for n, b in enumerate(self.books)}
        expected[self.books[0].id] += 5
        assert self.stock() == expected
