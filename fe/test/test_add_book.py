import base64
import uuid

import pytest

from fe import conf
from fe.access import book
from fe.access.new_seller import register_new_seller

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


class TestAddBook:
    @pytest.fixture(autouse=True)
    def pre_run_initialization(self):
        # do before test
        self.seller_id = "test_add_books_seller_id_{}".format(uuid.uuid1())
        self.store_id = "test_add_books_store_id_{}".format(uuid.uuid1())
        self.password = self.seller_id
        self.seller = register_new_seller(self.seller_id, self.password)

        code = self.seller.create_store(self.store_id)
        assert code == 200
        book_db = book.BookDB(conf.Use_Large_DB)
        self.books = book_db.get_book_info(0, 2)
        yield

    def listed(self):
        code, body = self.seller.books(self.store_id)
        assert code == 200
        return {b["book_id"]: b for b in body["books"]}

    def test_ok(self):
        for b in self.books:
            code = self.seller.add_book(self.store_id, 0, b)
            assert code == 200
        listed = self.listed()
        assert set(listed) == {b.id for b in self.books}
        for b in self.books:
            assert listed[b.id] == {"book_id": b.id, "title": b.title, "price": b.price,
                                    "stock_level": 0}

    def test_ok_with_pictures_and_minimal_info(self):
        b = self.books[0]
        b.pictures = [base64.b64encode(PNG).decode("ascii")] * 2
        assert self.seller.add_book(self.store_id, 3, b) == 200
        minimal = book.Book()
        minimal.id, minimal.title = "minimal_" + self.store_id, "Only a title"
        del minimal.tags, minimal.pictures  # missing fields are allowed too
        assert self.seller.add_book(self.store_id, 1, minimal) == 200
        listed = self.listed()
        assert listed[b.id]["stock_level"] == 3
        assert listed[minimal.id]["price"] == 0

    def test_error_non_exist_store_id(self):
        for b in self.books:
            # non exist store id
            code = self.seller.add_book(self.store_id + "x", 0, b)
            assert code == 513
        assert self.listed() == {}

    def test_error_exist_book_id(self):
        for b in self.books:
            code = self.seller.add_book(self.store_id, 5, b)
            assert code == 200
        for b in self.books:
            # exist book id
            code = self.seller.add_book(self.store_id, 0, b)
            assert code == 516
        assert all(v["stock_level"] == 5 for v in self.listed().values())

    def test_error_non_exist_user_id(self):
        for b in self.books:
            # non exist user id
            self.seller.seller_id = self.seller.seller_id + "_x"
            code = self.seller.add_book(self.store_id, 0, b)
            assert code == 511

    def test_error_another_sellers_store(self):
        other = register_new_seller(self.seller_id + "_other", self.password)
        for b in self.books:
            code = other.add_book(self.store_id, 0, b)
            assert code == 401
        assert self.listed() == {}
