import uuid

import pytest

from fe import conf
from fe.access import auth
from fe.access.buyer import Buyer


class TestPassword:
    @pytest.fixture(autouse=True)
    def pre_run_initialization(self):
        self.auth = auth.Auth(conf.URL)
        self.user_id = "test_password_{}".format(uuid.uuid1())
        self.old_password = "old_password_" + self.user_id
        self.new_password = "new_password_" + self.user_id
        self.terminal = "terminal_" + self.user_id
        assert self.auth.register(self.user_id, self.old_password) == 200
        yield

    def test_ok(self):
        code = self.auth.password(self.user_id, self.old_password, self.new_password)
        assert code == 200

        code, new_token = self.auth.login(self.user_id, self.old_password, self.terminal)
        assert code == 401

        code, new_token = self.auth.login(self.user_id, self.new_password, self.terminal)
        assert code == 200

        code = self.auth.logout(self.user_id, new_token)
        assert code == 200

    def test_error_password(self):
        code = self.auth.password(self.user_id, self.old_password + "_x", self.new_password)
        assert code == 401

        code, new_token = self.auth.login(self.user_id, self.new_password, self.terminal)
        assert code == 401
        code, _ = self.auth.login(self.user_id, self.old_password, self.terminal)
        assert code == 200

    def test_error_user_id(self):
        code = self.auth.password(self.user_id + "_x", self.old_password, self.new_password)
        assert code == 401

        code, new_token = self.auth.login(self.user_id, self.new_password, self.terminal)
        assert code == 401

    def test_password_change_ends_every_session(self):
        code, t1 = self.auth.login(self.user_id, self.old_password, self.terminal)
        assert code == 200
        code, t2 = self.auth.login(self.user_id, self.old_password, "other terminal")
        assert code == 200
        assert self.auth.password(self.user_id, self.old_password, self.new_password) == 200
        assert self.auth.logout(self.user_id, t1) == 401
        assert self.auth.logout(self.user_id, t2) == 401

    def test_new_password_works_for_payment_calls(self):
        assert self.auth.password(self.user_id, self.old_password, self.new_password) == 200
        buyer = Buyer(conf.URL, self.user_id, self.new_password)
        assert buyer.add_funds(100) == 200
        buyer.password = self.old_password
        assert buyer.add_funds(100) == 401
        assert buyer.balance() == (200, 100)
