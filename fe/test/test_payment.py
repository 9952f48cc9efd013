import uuid

import pytest

from be.sample_books import Book
from fe.access.buyer import Buyer
from fe.access.new_buyer import register_new_buyer
from fe.test.gen_book_data import GenBook


class TestPayment:
    seller_id: str
    store_id: str
    buyer_id: str
    password: str
    buy_book_info_list: [Book]
    order_id: str
    buyer: Buyer

    @pytest.fixture(autouse=True)
    def pre_run_initialization(self):
        self.seller_id = "test_payment_seller_id_{}".format(uuid.uuid1())
        self.store_id = "test_payment_store_id_{}".format(uuid.uuid1())
        self.buyer_id = "test_payment_buyer_id_{}".format(uuid.uuid1())
        self.password = self.seller_id
        gen_book = GenBook(self.seller_id, self.store_id)
        ok, buy_book_id_list = gen_book.gen(
            non_exist_book_id=False, low_stock_level=False, max_book_count=5)
        self.buy_book_info_list = gen_book.buy_book_info_list
        assert ok
        self.gen_book = gen_book
        b = register_new_buyer(self.buyer_id, self.password)
        self.buyer = b
        code, self.order_id = b.new_order(self.store_id, buy_book_id_list)
        assert code == 200
        self.total_price = 0
        for item in self.buy_book_info_list:
            book: Book = item[0]
            num = item[1]
            if book.price is None:
                continue
            else:
                self.total_price = self.total_price + book.price * num
        assert self.total_price == gen_book.total_price() > 0
        yield

    def state(self):
        code, order = self.buyer.order(self.order_id)
        assert code == 200
        return order["state"]

    def test_ok(self):
        code = self.buyer.add_funds(self.total_price + 7)
        assert code == 200
        code = self.buyer.payment(self.order_id)
        assert code == 200
        assert self.buyer.balance() == (200, 7)
        assert self.state() == "paid"
        # escrow: the seller is not paid before receipt
        assert self.gen_book.seller.balance() == (200, 0)

    def test_authorization_error(self):
        code = self.buyer.add_funds(self.total_price)
        assert code == 200
        self.buyer.password = self.buyer.password + "_x"
        code = self.buyer.payment(self.order_id)
        assert code == 401
        assert self.buyer.balance() == (200, self.total_price)
        assert self.state() == "unpaid"

    def test_another_buyer_cannot_pay(self):
        other = register_new_buyer(self.buyer_id + "_other", self.password)
        assert other.add_funds(self.total_price) == 200
        code = other.payment(self.order_id)
        assert code == 401
        assert other.balance() == (200, self.total_price)
        assert self.state() == "unpaid"

    def test_non_exist_order(self):
        code = self.buyer.add_funds(self.total_price)
        assert code == 200
        code = self.buyer.payment(self.order_id + "_x")
        assert code == 518
        assert self.buyer.balance() == (200, self.total_price)

    def test_not_suff_funds(self):
        code = self.buyer.add_funds(self.total_price - 1)
        assert code == 200
        code = self.buyer.payment(self.order_id)
        assert code == 519
        assert self.buyer.balance() == (200, self.total_price - 1)
        assert self.state() == "unpaid"
        # topped up, the same order can be paid
        assert self.buyer.add_funds(1) == 200
        assert self.buyer.payment(self.order_id) == 200
        assert self.buyer.balance() == (200, 0)

    def test_repeat_pay(self):
        code = self.buyer.add_funds(self.total_price * 2)
        assert code == 200
        code = self.buyer.payment(self.order_id)
        assert code == 200

        code = self.buyer.payment(self.order_id)
        assert code == 520
        assert self.buyer.balance() == (200, self.total_price)  # charged once
        assert self.state() == "paid"
