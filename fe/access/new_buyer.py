from fe import conf
from fe.access import auth
from fe.access.buyer import Buyer


def register_new_buyer(user_id, password) -> Buyer:
    a = auth.Auth(conf.URL)
    code = a.register(user_id, password)
    assert code == 200
    return Buyer(conf.URL, user_id, password)
