import uuid

import pytest

from fe.access.new_buyer import register_new_buyer
from fe.test.gen_book_data import GenBook


class TestNewOrder:
    @pytest.fixture(autouse=True)
    def pre_run_initialization(self):
        self.seller_id = "test_new_order_seller_id_{}".format(uuid.uuid1())
        self.store_id = "test_new_order_store_id_{}".format(uuid.uuid1())
        self.buyer_id = "test_new_order_buyer_id_{}".format(uuid.uuid1())
        self.password = self.seller_id
        self.buyer = register_new_buyer(self.buyer_id, self.password)
        self.gen_book = GenBook(self.seller_id, self.store_id)
        yield

    def assert_nothing_reserved(self):
        assert self.gen_book.stock() == self.gen_book.stock_levels
        code, body = self.buyer.orders()
        assert code == 200 and body["total"] == 0

    def test_non_exist_book_id(self):
        ok, buy_book_id_list = self.gen_book.gen(
            non_exist_book_id=True, low_stock_level=False, max_book_count=20)
        assert ok
        code, order_id = self.buyer.new_order(self.store_id, buy_book_id_list)
        assert code == 515 and order_id is None
        self.assert_nothing_reserved()

    def test_low_stock_level(self):
        ok, buy_book_id_list = self.gen_book.gen(
            non_exist_book_id=False, low_stock_level=True, max_book_count=20)
        assert ok
        code, _ = self.buyer.new_order(self.store_id, buy_book_id_list)
        assert code == 517
        self.assert_nothing_reserved()

    def test_one_short_line_reserves_nothing(self):
        ok, buy_book_id_list = self.gen_book.gen(
            non_exist_book_id=False, low_stock_level=False, max_book_count=20)
        assert ok
        last_id, _ = buy_book_id_list[-1]
        lines = buy_book_id_list[:-1] + [(last_id, self.gen_book.stock_levels[last_id] + 1)]
        code, _ = self.buyer.new_order(self.store_id, lines)
        assert code == 517
        self.assert_nothing_reserved()

    def test_ok(self):
        ok, buy_book_id_list = self.gen_book.gen(
            non_exist_book_id=False, low_stock_level=False, max_book_count=20)
        assert ok
        code, order_id = self.buyer.new_order(self.store_id, buy_book_id_list)
        assert code == 200 and order_id
        expected = dict(self.gen_book.stock_levels)
        for book_id, count in buy_book_id_list:
            expected[book_id] -= count
        assert self.gen_book.stock() == expected
        code, order = self.buyer.order(order_id)
        assert code == 200
        assert order["state"] == "unpaid" and order["store_id"] == self.store_id
        prices = {bk.id: bk.price for bk, _ in self.gen_book.buy_book_info_list}
        assert order["items"] == [{"book_id": b, "count": c, "price": prices[b]}
                                  for b, c in buy_book_id_list]
        assert order["total_price"] == self.gen_book.total_price()

    def test_duplicate_lines_are_merged(self):
        ok, buy_book_id_list = self.gen_book.gen(
            non_exist_book_id=False, low_stock_level=False, max_book_count=3)
        book_id, _ = buy_book_id_list[0]
        code, order_id = self.buyer.new_order(self.store_id, [(book_id, 1), (book_id, 1)])
        assert code == 200
        code, order = self.buyer.order(order_id)
        assert [(i["book_id"], i["count"]) for i in order["items"]] == [(book_id, 2)]
        assert self.gen_book.stock()[book_id] == self.gen_book.stock_levels[book_id] - 2

    def test_non_exist_user_id(self):
        ok, buy_book_id_list = self.gen_book.gen(
            non_exist_book_id=False, low_stock_level=False, max_book_count=20)
        assert ok
        self.buyer.user_id = self.buyer.user_id + "_x"
        code, _ = self.buyer.new_order(self.store_id, buy_book_id_list)
        assert code == 511
        assert self.gen_book.stock() == self.gen_book.stock_levels

    def test_bad_token(self):
        ok, buy_book_id_list = self.gen_book.gen(
            non_exist_book_id=False, low_stock_level=False, max_book_count=5)
        self.buyer.token = self.buyer.token + "_x"
        code, _ = self.buyer.new_order(self.store_id, buy_book_id_list)
        assert code == 401
        assert self.gen_book.stock() == self.gen_book.stock_levels

    def test_non_exist_store_id(self):
        ok, buy_book_id_list = self.gen_book.gen(
            non_exist_book_id=False, low_stock_level=False, max_book_count=20)
        assert ok
        code, _ = self.buyer.new_order(self.store_id + "_x", buy_book_id_list)
        assert code == 513
        self.assert_nothing_reserved()
