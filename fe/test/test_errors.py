"""Malformed requests: every reply is JSON {"message": ...} (never an HTML page),
bad bodies get 400 naming the field, and a refused request changes nothing."""
import uuid

import pytest
import requests

from fe import conf
from fe.test.gen_book_data import Shop


def url(path):
    return conf.URL + path.lstrip("/")


def assert_json_error(r, status):
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"]
    assert "<html" not in r.text.lower()
    return body["message"]


@pytest.fixture(scope="module")
def shop():
    return Shop("errors", funds=5000, n_books=2)


# ---------------------------------------------------------------- routing

@pytest.mark.parametrize("method, path", [
    ("GET", "/no/such/route"),
    ("POST", "/buyer/no_such_call"),
    ("GET", "/"),
    ("GET", "/orders/"),
])
def test_unknown_route_is_json_404(method, path):
    assert_json_error(requests.request(method, url(path)), 404)


@pytest.mark.parametrize("method, path", [
    ("GET", "/auth/login"),
    ("GET", "/buyer/payment"),
    ("PUT", "/seller/add_book"),
    ("POST", "/buyer/orders"),
    ("DELETE", "/orders/abc"),
])
def test_wrong_method_is_json_405(method, path):
    assert_json_error(requests.request(method, url(path), json={}), 405)


# ---------------------------------------------------------------- bodies

@pytest.mark.parametrize("data, content_type", [
    ("not json at all", "application/json"),
    ('{"user_id": "a", "password": ', "application/json"),   # truncated
    ("", "application/json"),
    ('["user_id", "password"]', "application/json"),          # JSON, but not an object
    ('"just a string"', "application/json"),
    ("user_id=a&password=b", "application/x-www-form-urlencoded"),
])
def test_body_that_is_not_a_json_object_is_400(data, content_type):
    r = requests.post(url("/auth/register"), data=data, headers={"Content-Type": content_type})
    assert "body" in assert_json_error(r, 400)


@pytest.mark.parametrize("path, body, field", [
    ("/auth/register", {"user_id": "u"}, "password"),
    ("/auth/register", {"password": "p"}, "user_id"),
    ("/auth/login", {"user_id": "u", "password": "p"}, "terminal"),
    ("/auth/password", {"user_id": "u", "oldPassword": "p"}, "newPassword"),
    ("/buyer/new_order", {"user_id": "u", "store_id": "s"}, "books"),
    ("/buyer/new_order", {"user_id": "u", "store_id": "s", "books": [{"id": "b"}]},
     "books.0.count"),
    ("/buyer/payment", {"user_id": "u", "password": "p"}, "order_id"),
    ("/buyer/add_funds", {"user_id": "u", "password": "p"}, "add_value"),
    ("/seller/add_book", {"user_id": "u", "store_id": "s", "stock_level": 1,
                          "book_info": {"title": "T"}}, "book_info.id"),
    ("/seller/add_stock_level", {"user_id": "u", "store_id": "s", "book_id": "b"},
     "add_stock_level"),
])
def test_missing_field_is_400_naming_it(path, body, field):
    message = assert_json_error(requests.post(url(path), json=body), 400)
    assert f"'{field}'" in message and "missing" in message


@pytest.mark.parametrize("path, body, field", [
    ("/auth/register", {"user_id": 7, "password": "p"}, "user_id"),
    ("/auth/register", {"user_id": "u", "password": None}, "password"),
    ("/buyer/add_funds", {"user_id": "u", "password": "p", "add_value": "100"}, "add_value"),
    ("/buyer/add_funds", {"user_id": "u", "password": "p", "add_value": 1.5}, "add_value"),
    ("/buyer/add_funds", {"user_id": "u", "password": "p", "add_value": 100.0}, "add_value"),
    ("/buyer/add_funds", {"user_id": "u", "password": "p", "add_value": True}, "add_value"),
    ("/buyer/new_order", {"user_id": "u", "store_id": "s", "books": [{"id": "b", "count": True}]},
     "books.0.count"),
    ("/buyer/new_order", {"user_id": "u", "store_id": "s", "books": [{"id": "b", "count": 0}]},
     "books.0.count"),
    ("/buyer/new_order", {"user_id": "u", "store_id": "s", "books": []}, "books"),
    ("/buyer/new_order", {"user_id": "u", "store_id": "s", "books": {"id": "b"}}, "books"),
    ("/seller/add_stock_level", {"user_id": "u", "store_id": "s", "book_id": "b",
                                 "add_stock_level": "10"}, "add_stock_level"),
    ("/seller/add_stock_level", {"user_id": "u", "store_id": "s", "book_id": "b",
                                 "add_stock_level": -1}, "add_stock_level"),
    ("/seller/add_book", {"user_id": "u", "store_id": "s", "stock_level": 1.0,
                          "book_info": {"id": "b", "title": "T"}}, "stock_level"),
    ("/seller/add_book", {"user_id": "u", "store_id": "s", "stock_level": 1,
                          "book_info": {"id": "b", "title": "T", "price": "12"}}, "book_info.price"),
    ("/seller/add_book", {"user_id": "u", "store_id": "s", "stock_level": 1,
                          "book_info": {"id": "b", "title": "T", "tags": "a,b"}}, "book_info.tags"),
])
def test_wrong_type_is_400_naming_the_field(path, body, field):
    message = assert_json_error(requests.post(url(path), json=body), 400)
    assert f"'{field}'" in message


# ---------------------------------------------------------------- refused requests change nothing

def test_rejected_requests_change_nothing(shop):
    book_id, _ = shop.buy_list[0]
    stock, balances = shop.gen.stock(), shop.balances()
    buyer, seller = shop.buyer, shop.seller
    refused = [
        ("/buyer/new_order", buyer.token,
         {"user_id": buyer.user_id, "store_id": shop.store_id,
          "books": [{"id": book_id, "count": True}]}),
        ("/buyer/new_order", buyer.token,
         {"user_id": buyer.user_id, "store_id": shop.store_id,
          "books": [{"id": book_id, "count": 1}, {"id": book_id, "count": 1.0}]}),
        ("/buyer/add_funds", buyer.token,
         {"user_id": buyer.user_id, "password": buyer.password, "add_value": 1.5}),
        ("/buyer/add_funds", buyer.token,
         {"user_id": buyer.user_id, "password": buyer.password, "add_value": "-100"}),
        ("/seller/add_stock_level", seller.token,
         {"user_id": seller.seller_id, "store_id": shop.store_id, "book_id": book_id,
          "add_stock_level": True}),
        ("/seller/add_book", seller.token,
         {"user_id": seller.seller_id, "store_id": shop.store_id, "stock_level": "3",
          "book_info": {"id": "errors_" + uuid.uuid4().hex, "title": "T"}}),
    ]
    for path, token, body in refused:
        r = requests.post(url(path), json=body, headers={"token": token})
        assert_json_error(r, 400)
    r = requests.post(url("/buyer/new_order"), data="{not json", headers={"token": buyer.token})
    assert_json_error(r, 400)
    assert shop.gen.stock() == stock
    assert shop.balances() == balances
    code, body = buyer.orders()
    assert code == 200 and body["total"] == 0


def test_business_errors_are_json_too(shop):
    r = requests.post(url("/buyer/payment"),
                      json={"user_id": shop.buyer.user_id, "password": shop.buyer.password,
                            "order_id": "errors_no_such_order"})
    assert "errors_no_such_order" in assert_json_error(r, 518)
    r = requests.get(url("/orders/errors_no_such_order"), params={"user_id": shop.buyer.user_id},
                     headers={"token": shop.buyer.token})
    assert_json_error(r, 518)
    r = requests.get(url("/buyer/balance"), params={"user_id": shop.buyer.user_id})
    assert_json_error(r, 401)  # no token
    r = requests.get(url("/buyer/balance"))
    assert "user_id" in assert_json_error(r, 400)  # no user_id


def test_an_order_total_past_64_bits_is_400_naming_the_field(shop):
    """Ten lines at 10^12 cents times 10^6 copies: 10^19 cents, past int64."""
    seller, store_id = shop.seller, shop.store_id
    ids = ["big_" + uuid.uuid4().hex for _ in range(10)]
    for book_id in ids:
        r = requests.post(url("/seller/add_book"), headers={"token": seller.token}, json={
            "user_id": seller.seller_id, "store_id": store_id, "stock_level": 10**6,
            "book_info": {"id": book_id, "title": "T", "price": 10**12}})
        assert r.status_code == 200
    balances = shop.balances()
    r = requests.post(url("/buyer/new_order"), headers={"token": shop.buyer.token}, json={
        "user_id": shop.buyer.user_id, "store_id": store_id,
        "books": [{"id": b, "count": 10**6} for b in ids]})
    assert "'books'" in assert_json_error(r, 400)
    code, body = shop.buyer.orders()
    assert code == 200 and body["total"] == 0 and shop.balances() == balances
