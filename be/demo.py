"""``python app.py --demo``: a seller with a store of generated books and a funded
buyer, made through the model layer at start-up, and the text that tells a new
user how to try the API with them. A second seller's store lists the first few
books too, two as the first store describes them (stored once, shown once by
search with both stores) and the first in its own words (issue 12: each store
shows its own description).

Idempotent: on a real MongoDB that already holds the demo accounts it reuses
them (and tops the buyer's balance back up) instead of failing.
"""
import json

from be import errors
from be.model import sessions, stores, users
from be.sample_books import COLUMNS, iter_books, row_to_book

SELLER = ("demo_seller", "demo-seller-pw")
BUYER = ("demo_buyer", "demo-buyer-pw")
STORE = "demo_store"
RIVAL = ("demo_rival", "demo-rival-pw")
RIVAL_STORE = "demo_rival_store"
RIVAL_BOOKS = 3      # the first books, also in the rival's store
RIVAL_TITLE = "{}（{} 版）"  # the rival's own title for the first one
FUNDS = 1_000_000   # cents: 10,000.00
STOCK = 1000


def _account(ctx, user_id, password):
    try:
        users.register(ctx, user_id, password)
    except errors.UserExists:
        pass
    try:
        return sessions.login(ctx, user_id, password, "demo")
    except errors.AuthorizationFailed:
        raise SystemExit(f"--demo: user {user_id} exists with another password; "
                         f"drop it or use a fresh database")


def _store(ctx, user_id, store_id):
    try:
        stores.create_store(ctx, user_id, store_id)
    except errors.StoreExists:
        stores.owned_store(ctx, user_id, store_id)  # 401 if someone else owns it


def _list(ctx, user_id, store_id, info):
    try:
        stores.add_book(ctx, user_id, store_id, info, STOCK)
    except errors.BookExists:
        pass


def setup(ctx, books=50, seed=2024):
    """Create (or reuse) the demo seller, store, books and buyer, and the rival's
    store; returns a dict with their ids, passwords, tokens and the books listed."""
    seller_token = _account(ctx, *SELLER)
    _store(ctx, SELLER[0], STORE)
    rival_token = _account(ctx, *RIVAL)
    _store(ctx, RIVAL[0], RIVAL_STORE)
    listed = []
    for n, row in enumerate(iter_books(books, seed=seed)):
        info = row_to_book(tuple(row[c] for c in COLUMNS)).__dict__
        _list(ctx, SELLER[0], STORE, info)
        if n == 0:
            _list(ctx, RIVAL[0], RIVAL_STORE, dict(info, title=RIVAL_TITLE.format(
                info["title"], RIVAL[0]), price=(info["price"] or 0) + 100, pictures=[]))
        elif n < RIVAL_BOOKS:
            _list(ctx, RIVAL[0], RIVAL_STORE, info)
        listed.append({"id": info["id"], "title": info["title"], "price": info["price"]})
    buyer_token = _account(ctx, *BUYER)
    balance = users.own_balance(ctx, BUYER[0])
    if balance < FUNDS:
        users.add_funds(ctx, BUYER[0], FUNDS - balance)
    return {
        "seller": {"user_id": SELLER[0], "password": SELLER[1], "token": seller_token},
        "rival": {"user_id": RIVAL[0], "password": RIVAL[1], "token": rival_token,
                  "store_id": RIVAL_STORE},
        "buyer": {"user_id": BUYER[0], "password": BUYER[1], "token": buyer_token,
                  "balance": max(balance, FUNDS)},
        "store_id": STORE,
        "books": listed,
    }


def _curl(url, path, body, token=None):
    head = f" -H 'token: {token}'" if token else ""
    data = json.dumps(body, ensure_ascii=False)
    return (f"curl -s -X POST {url}{path} -H 'Content-Type: application/json'{head} "
            f"-d '{data}'")


def instructions(demo, url):
    """What to print: the credentials and a few curl commands that work as shown."""
    if not url.endswith("/"):
        url += "/"
    s, b = demo["seller"], demo["buyer"]
    first, second = demo["books"][0], demo["books"][1]
    lines = [
        "",
        "Demo data ready:",
        f"  seller  {s['user_id']} / {s['password']}  owns store {demo['store_id']} "
        f"with {len(demo['books'])} books ({STOCK} copies each)",
        f"  buyer   {b['user_id']} / {b['password']}  balance {b['balance']} cents",
        f"  rival   {demo['rival']['user_id']} / {demo['rival']['password']}  owns store "
        f"{demo['rival']['store_id']}: the first {RIVAL_BOOKS} books too, the first in its "
        "own words",
        f"  buyer token (valid for the token lifetime): {b['token']}",
        f"  e.g. book {first['id']} \"{first['title']}\" at {first['price']} cents",
        "",
        "Try it:",
        "  # list the store's books (as the seller)",
        f"  curl -s '{url}seller/books?user_id={s['user_id']}&store_id={demo['store_id']}'"
        f" -H 'token: {s['token']}'",
        "  # order two books (as the buyer); the reply carries the order_id",
        "  " + _curl(url, "buyer/new_order",
                     {"user_id": b["user_id"], "store_id": demo["store_id"],
                      "books": [{"id": first["id"], "count": 1},
                                {"id": second["id"], "count": 2}]}, b["token"]),
        "  # pay it (put the order_id from the reply in place of ORDER_ID)",
        "  " + _curl(url, "buyer/payment",
                     {"user_id": b["user_id"], "order_id": "ORDER_ID",
                      "password": b["password"]}),
        "  # one book id, two stores, each showing its own description",
        f"  curl -s '{url}books/{first['id']}?store_id={demo['store_id']}'",
        f"  curl -s '{url}books/{first['id']}?store_id={demo['rival']['store_id']}'",
        "  # manage a listing (as the seller): reprice, set the stock, take it off sale",
        "  " + _curl(url, "seller/set_price",
                     {"user_id": s["user_id"], "store_id": demo["store_id"],
                      "book_id": second["id"], "price": second["price"] + 1}, s["token"]),
        "  " + _curl(url, "seller/set_stock_level",
                     {"user_id": s["user_id"], "store_id": demo["store_id"],
                      "book_id": second["id"], "stock_level": 5}, s["token"]),
        "  " + _curl(url, "seller/unlist_book",
                     {"user_id": s["user_id"], "store_id": demo["store_id"],
                      "book_id": second["id"]}, s["token"]),
        "  # log in again for a fresh token",
        "  " + _curl(url, "auth/login",
                     {"user_id": b["user_id"], "password": b["password"], "terminal": "curl"}),
        f"  # or every call in the browser (Authorize with the buyer token): {url}docs",
        "",
    ]
    return "\n".join(lines)
