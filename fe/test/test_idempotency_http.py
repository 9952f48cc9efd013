"""Idempotency keys over HTTP: a client that lost a reply sends the request again
with the same ``Idempotency-Key`` and gets the first reply, nothing done twice,
even when the repeats arrive at once."""
import threading
import uuid
from urllib.parse import urljoin

from fe.access.client import post
from fe.test.gen_book_data import Shop


def _key():
    return uuid.uuid4().hex


def _at_once(n, call):
    """``call()`` from ``n`` threads released together; their replies."""
    start = threading.Barrier(n)
    replies = [None] * n

    def run(i):
        start.wait()
        replies[i] = call()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return replies


def _add_funds(buyer, value, key):
    return post(urljoin(buyer.url_prefix, "add_funds"),
                {"user_id": buyer.user_id, "password": buyer.password, "add_value": value},
                idempotency_key=key)


def test_concurrent_repeats_of_add_funds_deposit_once():
    shop = Shop("idem_funds", funds=0)
    key = _key()
    replies = _at_once(4, lambda: _add_funds(shop.buyer, 1000, key))
    assert [(r.status_code, r.json()) for r in replies] == [(200, {"message": "ok"})] * 4
    assert sorted(r.headers.get("Idempotent-Replayed", "") for r in replies) == \
        ["", "true", "true", "true"]
    assert shop.buyer.balance() == (200, 1000)
    # a later repeat too; the same key with another amount is 409, and changes nothing
    assert shop.buyer.add_funds(1000, key) == 200
    r = _add_funds(shop.buyer, 2000, key)
    assert r.status_code == 409 and "different request" in r.json()["message"]
    assert shop.buyer.balance() == (200, 1000)
    # without a key: every call deposits, as before
    assert shop.buyer.add_funds(1) == shop.buyer.add_funds(1) == 200
    assert shop.buyer.balance() == (200, 1002)


def test_concurrent_repeats_of_new_order_and_payment_act_once():
    shop = Shop("idem_order")
    before_stock, (before_balance, _) = shop.gen.stock(), shop.balances()
    key = _key()
    placed = _at_once(3, lambda: shop.buyer.new_order(shop.store_id, shop.buy_list, key))
    assert {code for code, _ in placed} == {200}
    (order_id,) = {order_id for _, order_id in placed}
    code, body = shop.buyer.orders()
    assert code == 200 and body["total"] == 1
    taken = {b: before_stock[b] - shop.gen.stock()[b] for b in before_stock}
    assert taken == {b: c for b, c in shop.buy_list}
    paid = _at_once(3, lambda: shop.buyer.payment(order_id, key + "-pay"))
    assert paid == [200, 200, 200]
    assert shop.balances()[0] == before_balance - shop.total
    assert shop.read(order_id)["state"] == "paid"
    assert shop.buyer.payment(order_id) == 520  # without the key: as before


def test_a_bad_key_is_400_and_claims_nothing():
    shop = Shop("idem_bad", funds=0)
    for bad in ("", "with space", "x" * 256):
        r = _add_funds(shop.buyer, 5, bad)
        assert r.status_code == 400 and "Idempotency-Key" in r.json()["message"]
    assert shop.buyer.balance() == (200, 0)
