"""be.demo: the data ``python app.py --demo`` starts with, at the model level."""
from be import demo
from be.model import orders, search, sessions, stores, users
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
                   "http://127.0.0.1:5000/buyer/payment", info["books"][0]["id"],
                   "http://127.0.0.1:5000/docs"):
        assert needle in text
    assert sessions.authenticate(ctx, demo.BUYER[0], info["buyer"]["token"])  # printed token is live


def test_the_rival_store_shows_its_own_words_and_shares_the_rest(ctx):
    info = demo.setup(ctx, books=5)
    first, second = info["books"][:2]
    rival = info["rival"]["store_id"]
    mine = search.get_book(ctx, first["id"], info["store_id"])
    theirs = search.get_book(ctx, first["id"], rival)
    assert mine["title"] == first["title"] and mine["price"] == first["price"]
    assert theirs["title"] == demo.RIVAL_TITLE.format(first["title"], demo.RIVAL[0])
    assert theirs["price"] == first["price"] + 100
    hits, _ = search.search_books(ctx, second["title"])
    (hit,) = [h for h in hits if h["book_id"] == second["id"]]  # described alike: one hit
    assert [r["store_id"] for r in hit["listings"]] == sorted([info["store_id"], rival])
    demo.setup(ctx, books=5)  # again: nothing added twice
    assert stores.store_books(ctx, demo.RIVAL[0], rival, 1, 100)[1] == demo.RIVAL_BOOKS


def test_instructions_manage_a_listing(ctx):
    info = demo.setup(ctx, books=3)
    text = demo.instructions(info, "http://127.0.0.1:5000")
    for path in ("seller/set_price", "seller/set_stock_level", "seller/unlist_book",
                 f"books/{info['books'][0]['id']}?store_id={demo.RIVAL_STORE}"):
        assert "http://127.0.0.1:5000/" + path in text
    assert info["seller"]["token"] in text
