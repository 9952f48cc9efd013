import uuid

import pytest

from fe import conf
from fe.access import auth


class TestRegister:
    @pytest.fixture(autouse=True)
    def pre_run_initialization(self):
        self.user_id = "test_register_user_{}".format(uuid.uuid1())
        self.password = "test_register_password_{}".format(uuid.uuid1())
        self.auth = auth.Auth(conf.URL)
        yield

    def test_register_ok(self):
        code = self.auth.register(self.user_id, self.password)
        assert code == 200
        code, token = self.auth.login(self.user_id, self.password, "terminal")
        assert code == 200 and token

    def test_unregister_ok(self):
        code = self.auth.register(self.user_id, self.password)
        assert code == 200
        code = self.auth.unregister(self.user_id, self.password)
        assert code == 200
        code, _ = self.auth.login(self.user_id, self.password, "terminal")
        assert code == 401

    def test_unregister_error_authorization(self):
        code = self.auth.register(self.user_id, self.password)
        assert code == 200
        code = self.auth.unregister(self.user_id + "_x", self.password)
        assert code == 401
        code = self.auth.unregister(self.user_id, self.password + "_x")
        assert code == 401
        # the account is still there
        code, _ = self.auth.login(self.user_id, self.password, "terminal")
        assert code == 200

    def test_register_error_exist_user_id(self):
        code = self.auth.register(self.user_id, self.password)
        assert code == 200
        code = self.auth.register(self.user_id, self.password + "_other")
        assert code == 512
        code, _ = self.auth.login(self.user_id, self.password, "terminal")
        assert code == 200  # the first password still holds

    def test_unregistered_id_is_not_reused(self):
        assert self.auth.register(self.user_id, self.password) == 200
        assert self.auth.unregister(self.user_id, self.password) == 200
        assert self.auth.register(self.user_id, self.password) == 512
