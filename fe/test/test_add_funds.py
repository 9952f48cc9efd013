import uuid

import pytest

from fe.access.new_buyer import register_new_buyer


class TestAddFunds:
    @pytest.fixture(autouse=True)
    def pre_run_initialization(self):
        self.user_id = "test_add_funds_{}".format(uuid.uuid1())
        self.password = self.user_id
        self.buyer = register_new_buyer(self.user_id, self.password)
        yield

    def test_ok(self):
        code = self.buyer.add_funds(1000)
        assert code == 200
        assert self.buyer.balance() == (200, 1000)

        code = self.buyer.add_funds(-1000)
        assert code == 200
        assert self.buyer.balance() == (200, 0)

    def test_error_user_id(self):
        self.buyer.user_id = self.buyer.user_id + "_x"
        code = self.buyer.add_funds(10)
        assert code == 401

    def test_error_password(self):
        self.buyer.password = self.buyer.password + "_x"
        code = self.buyer.add_funds(10)
        assert code == 401
        self.buyer.password = self.password
        assert self.buyer.balance() == (200, 0)

    def test_withdrawal_may_not_go_below_zero(self):
        assert self.buyer.add_funds(500) == 200
        code = self.buyer.add_funds(-501)
        assert code == 519
        assert self.buyer.balance() == (200, 500)
        assert self.buyer.add_funds(-500) == 200
        assert self.buyer.balance() == (200, 0)
        assert self.buyer.add_funds(-1) == 519
        assert self.buyer.balance() == (200, 0)
