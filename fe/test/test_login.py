import uuid

import pytest

from fe import conf
from fe.access import auth
from fe.access.new_seller import register_new_seller


class TestLogin:
    @pytest.fixture(autouse=True)
    def pre_run_initialization(self):
        self.auth = auth.Auth(conf.URL)
        # register a user
        self.user_id = "test_login_{}".format(uuid.uuid1())
        self.password = "password_" + self.user_id
        self.terminal = "terminal_" + self.user_id
        assert self.auth.register(self.user_id, self.password) == 200
        yield

    def test_ok(self):
        code, token = self.auth.login(self.user_id, self.password, self.terminal)
        assert code == 200 and token

        code = self.auth.logout(self.user_id + "_x", token)
        assert code == 401

        code = self.auth.logout(self.user_id, token + "_x")
        assert code == 401

        code = self.auth.logout(self.user_id, token)
        assert code == 200

        code = self.auth.logout(self.user_id, token)  # that session is gone
        assert code == 401

    def test_error_user_id(self):
        code, token = self.auth.login(self.user_id + "_x", self.password, self.terminal)
        assert code == 401 and token is None

    def test_error_password(self):
        code, token = self.auth.login(self.user_id, self.password + "_x", self.terminal)
        assert code == 401 and token is None

    def test_logout_without_token_is_401(self):
        code, _ = self.auth.login(self.user_id, self.password, self.terminal)
        assert code == 200
        assert self.auth.logout(self.user_id, "") == 401

    def test_logging_in_again_keeps_earlier_tokens(self):
        code, t1 = self.auth.login(self.user_id, self.password, self.terminal)
        assert code == 200
        code, t2 = self.auth.login(self.user_id, self.password, self.terminal)
        assert code == 200
        code, t3 = self.auth.login(self.user_id, self.password, "another terminal")
        assert code == 200
        assert len({t1, t2, t3}) == 3
        # logging one session out leaves the others working
        assert self.auth.logout(self.user_id, t2) == 200
        assert self.auth.logout(self.user_id, t1) == 200
        assert self.auth.logout(self.user_id, t3) == 200

    def test_token_works_on_token_endpoints_only_for_its_user(self):
        seller = register_new_seller("test_login_seller_{}".format(uuid.uuid1()), "pw")
        code, token = self.auth.login(self.user_id, self.password, self.terminal)
        assert code == 200
        # the seller's client, but with another user's token
        seller.token = token
        assert seller.create_store("test_login_store_{}".format(uuid.uuid1())) == 401
