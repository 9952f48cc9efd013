from fe import conf
from fe.access import auth
from fe.access.seller import Seller


def register_new_seller(user_id, password) -> Seller:
    a = auth.Auth(conf.URL)
    code = a.register(user_id, password)
    assert code == 200
    return Seller(conf.URL, user_id, password)
