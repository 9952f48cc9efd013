"""be.demo: the data ``python app.py --demo`` starts with, at the model level."""
from be import demo
from be.model import orders, sessions, stores, users
from be.sample_books import iter_books


def test_demo_store_can_be_ordered_from_and_paid_by_the_demo_buyer(ctx):
    info = demo.setup(ctx, books=12)
    seller, buyer, store_id = info["seller"], info["buyer"], info["store_id"]

    rows, total = stores.store_books(ctx, seller["user_id"], store_id, 1, 100)[:2]
    expected = {str(b["id"]): (b["title"], b["price"]) for b in iter_books(12, seed=2024)}
    assert total == 12
    assert {r["book_id"]: (r["title"], r["price"]) for r in rows} == expected
    assert all(r["stock_level"] == demo.STOCK for r in rows)
    assert users.own_balance(ctx, buyer["user_id"]) == demo.FUNDS

    sessions.login(ctx, buyer["user_id"], buyer["password"], "t")  # printed password works
    first, second = info["books"][:2]
    order_id = orders.new_order(ctx, buyer["user_id"], store_id,
                                [(first["id"], 1), (second["id"], 2)])
    orders.payment(ctx, buyer["user_id"], order_id)
    order = orders.get_order(ctx, buyer["user_id"], order_id)
    assert order["state"] == "paid"
    assert order["total_price"] == first["price"] + 2 * second["price"]
    assert users.own_balance(ctx, buyer["user_id"]) == demo.FUNDS - order["total_price"]


def test_setup_again_reuses_the_accounts_and_tops_the_buyer_up(ctx):
    first = demo.setup(ctx, books=5)
    buyer = first["buyer"]
    order_id = orders.new_order(ctx, buyer["user_id"], first["store_id"],
                                [(first["books"][0]["id"], 3)])
    orders.payment(ctx, buyer["user_id"], order_id)

    again = demo.setup(ctx, books=5)  # e.g. a restart against the same MongoDB
    _, total = stores.store_books(ctx, again["seller"]["user_id"],
                                  again["store_id"], 1, 100)[:2]
    assert total == 5
    assert users.own_balance(ctx, buyer["user_id"]) == demo.FUNDS


def test_instructions_show_credentials_and_working_calls(ctx):
    info = demo.setup(ctx, books=3)
    text = demo.instructions(info, "http://127.0.0.1:5000")
    for needle in (demo.SELLER[0], demo.SELLER[1], demo.BUYER[0], demo.BUYER[1],
                   info["buyer"]["token"], "http://127.0.0.1:5000/buyer/new_order",
                   "http://127.0.0.1:5000/buyer/payment", info["books"][0]["id"]):
        assert needle in text
    assert sessions.authenticate(ctx, demo.BUYER[0], info["buyer"]["token"])  # printed token is live
