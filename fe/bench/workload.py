"""The bench's world: sellers, stores, books and funded buyers made over HTTP with
the fe.access client, existing orders preloaded, and one new_order + payment."""
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

from be.sample_books import COLUMNS, iter_books, row_to_book
from fe.access.auth import Auth
from fe.access.buyer import Buyer
from fe.access.seller import Seller

PASSWORD = "bench-pw"
STOCK = 10**8          # per listing: never the limit during a run
FUNDS = 10**11         # cents per buyer: never the limit during a run
BOOK_SEED = 7


@dataclass
class World:
    url: str
    prefix: str
    stores: list = field(default_factory=list)   # (store_id, [book ids])
    buyers: list = field(default_factory=list)   # fe.access Buyer, logged in

    def store_of(self, n):
        """The store buyer ``n`` orders from."""
        return self.stores[n % len(self.stores)]


def _check(what, code, ok=(200,)):
    if code not in ok:
        raise RuntimeError(f"bench setup: {what} answered {code}")


def _register(url, user_id):
    _check(f"register {user_id}", Auth(url).register(user_id, PASSWORD))


def _seller(url, user_id, store_id):
    _register(url, user_id)
    seller = Seller(url, user_id, PASSWORD)
    _check(f"create_store {store_id}", seller.create_store(store_id))
    return seller


def _buyer(url, user_id):
    _register(url, user_id)
    buyer = Buyer(url, user_id, PASSWORD)
    _check(f"add_funds {user_id}", buyer.add_funds(FUNDS))  # also warms the password check
    return buyer


def setup(url, buyers, sellers=2, books=100, workers=8, log=print):
    """Register ``sellers`` sellers with one store of ``books`` generated books each,
    and ``buyers`` funded buyers, all over HTTP; ids are unique to this run."""
    prefix = f"bench_{uuid.uuid4().hex[:8]}"
    world = World(url, prefix)
    started = time.perf_counter()
    infos = [row_to_book(tuple(row[c] for c in COLUMNS), pictures=0)
             for row in iter_books(books, seed=BOOK_SEED)]
    book_ids = [b.id for b in infos]
    with ThreadPoolExecutor(workers) as pool:
        stores = [(f"{prefix}_seller{i}", f"{prefix}_store{i}") for i in range(sellers)]
        made = list(pool.map(lambda s: _seller(url, *s), stores))
        adds = [pool.submit(seller.add_book, store_id, STOCK, info)
                for seller, (_, store_id) in zip(made, stores) for info in infos]
        buyer_jobs = [pool.submit(_buyer, url, f"{prefix}_buyer{i}") for i in range(buyers)]
        for fut in adds:
            _check("add_book", fut.result())
        world.buyers = [fut.result() for fut in buyer_jobs]
    world.stores = [(store_id, book_ids) for _, store_id in stores]
    log(f"setup: {sellers} sellers/stores x {books} books, {buyers} funded buyers "
        f"in {time.perf_counter() - started:.1f} s")
    return world


def order_and_pay(buyer, store_id, book_ids, lines, rng, record):
    """One new_order of ``lines`` distinct books (one copy each) and its payment.
    ``record(call, seconds, ok, detail)`` sees each call; True if the order got paid."""
    picks = rng.sample(book_ids, min(lines, len(book_ids)))
    t0 = time.perf_counter()
    try:
        code, order_id = buyer.new_order(store_id, [(b, 1) for b in picks])
    except Exception as exc:  # a dropped connection is a failed call, not a crash
        code, order_id = type(exc).__name__, None
    t1 = time.perf_counter()
    record("new_order", t1 - t0, code == 200, code)
    if code != 200:
        return False
    try:
        code = buyer.payment(order_id)
    except Exception as exc:
        code = type(exc).__name__
    record("payment", time.perf_counter() - t1, code == 200, code)
    return code == 200


# ---------------------------------------------------------------- existing orders

def preload_model(backend, world, count, log=print):
    """Give the server ``count`` existing paid orders, written through the model
    layer: one real new_order + payment, then copies of that order document
    (fresh ids, spread over the buyers and back in time), inserted in batches."""
    from be.model import orders
    if count <= 0:
        return
    started = time.perf_counter()
    buyer = world.buyers[0]
    store_id, book_ids = world.store_of(0)
    lines = [(b, 1) for b in book_ids[:3]]
    order_id = orders.new_order(backend, buyer.user_id, store_id, lines)
    orders.payment(backend, buyer.user_id, order_id)
    template = backend.db.orders.find_one({"_id": order_id})
    buyers = world.buyers
    insert_copies(backend.db, template, count - 1, lambda n: buyers[n % len(buyers)].user_id)
    log(f"preload: {count} paid orders (model layer) in {time.perf_counter() - started:.1f} s")


def insert_copies(db, template, count, buyer_of):
    """Insert ``count`` copies of the order document ``template``: fresh ids, the
    buyer ``buyer_of(n)``, copy n moved n + 1 seconds back in time; in batches."""
    batch = []
    times = ("created_at", "updated_at", "pay_deadline", "paid_at")
    for n in range(count):
        shift = timedelta(seconds=n + 1)
        doc = dict(template, _id=uuid.uuid4().hex,  # the engine copies what it stores
                   buyer_id=buyer_of(n),
                   history=[dict(h, at=h["at"] - shift) for h in template["history"]])
        doc.update((name, template[name] - shift) for name in times)
        batch.append(doc)
        if len(batch) == 5000:
            db.orders.insert_many(batch)
            batch = []
    if batch:
        db.orders.insert_many(batch)


def preload_http(world, count, lines, workers=8, log=print):
    """Give a running server ``count`` more paid orders over HTTP."""
    if count <= 0:
        return
    from tqdm import tqdm
    started = time.perf_counter()
    failures = []

    def record(call, seconds, ok, detail):
        if not ok:
            failures.append((call, detail))

    def job(n):
        store_id, book_ids = world.store_of(n)
        return order_and_pay(world.buyers[n % len(world.buyers)], store_id, book_ids, lines,
                             random.Random(n), record)

    with ThreadPoolExecutor(workers) as pool:
        list(tqdm(pool.map(job, range(count)), total=count, desc="preload orders",
                  unit="order", leave=False))
    if failures:
        raise RuntimeError(f"preload: {len(failures)} calls failed, e.g. {failures[0]}")
    log(f"preload: {count} paid orders (HTTP) in {time.perf_counter() - started:.1f} s")
