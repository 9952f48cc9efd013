import uuid

import pytest

from fe.access.new_seller import register_new_seller


class TestCreateStore:
    @pytest.fixture(autouse=True)
    def pre_run_initialization(self):
        self.user_id = "test_create_store_user_{}".format(uuid.uuid1())
        self.store_id = "test_create_store_store_{}".format(uuid.uuid1())
        self.password = self.user_id
        self.seller = register_new_seller(self.user_id, self.password)
        yield

    def test_ok(self):
        code = self.seller.create_store(self.store_id)
        assert code == 200
        code, body = self.seller.books(self.store_id)
        assert code == 200 and body["books"] == [] and body["total"] == 0

    def test_error_exist_store_id(self):
        code = self.seller.create_store(self.store_id)
        assert code == 200
        code = self.seller.create_store(self.store_id)
        assert code == 514

    def test_error_store_id_taken_by_another_seller(self):
        assert self.seller.create_store(self.store_id) == 200
        other = register_new_seller(self.user_id + "_other", self.password)
        assert other.create_store(self.store_id) == 514
        # the store still belongs to the first seller
        assert self.seller.books(self.store_id)[0] == 200
        assert other.books(self.store_id)[0] == 401

    def test_error_non_exist_user_id(self):
        self.seller.seller_id = self.seller.seller_id + "_x"
        code = self.seller.create_store(self.store_id)
        assert code == 511

    def test_error_token(self):
        self.seller.token = self.seller.token + "_x"
        code = self.seller.create_store(self.store_id)
        assert code == 401
