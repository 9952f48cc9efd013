"""Growth of the embedded engine: model-layer CPU ms per call at N existing orders.

    python -m fe.bench.growth --orders 1000,100000

For each N, a fresh embedded database gets one store of 100 books, 1,000 funded
buyers and N paid orders of 10 lines (copies of one real order, spread back in
time; one "busy" buyer holds 10% of them, every other buyer about 0.1%, and all
belong to the one seller). Then it prints the best of a few rounds, in CPU ms
per call, of: new_order (10 lines), payment, a typical buyer's first page, the
busy buyer's first page, the seller's first page of paid orders (all N match),
the seller's page of paid orders after a cursor half-way down that list
(``after``) and one timeout sweep. The figures are in doc/scaling.md.
"""
import argparse
import random
import time

from be import watcher
from be.backend import Backend
from be.model import orders, stores, users
from fe.bench import workload

BUYERS = 1000
BOOKS = 100
PASSWORD = "growth-pw"


def _best(call, n, rounds):
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(n):
            call()
        best = min(best, (time.process_time() - started) / n * 1000)
    return best


def _world(count, buyer_count):
    ctx = Backend()
    users.register(ctx, "seller", PASSWORD)
    stores.create_store(ctx, "seller", "store")
    for i in range(BOOKS):
        stores.add_book(ctx, "seller", "store",
                        {"id": f"b{i}", "title": f"book {i}", "price": 100 + i}, 10**9)
    buyers = []
    for i in range(buyer_count):
        users.register(ctx, f"u{i}", PASSWORD)
        users.add_funds(ctx, f"u{i}", 10**11)
        buyers.append(f"u{i}")
    first = orders.new_order(ctx, "u0", "store",
                             [(f"b{j}", 1) for j in range(10)])
    orders.payment(ctx, "u0", first)
    template = ctx.db.orders.find_one({"_id": first})
    # the busy buyer u1 holds every tenth order; the rest go round all buyers
    workload.insert_copies(ctx.db, template, count - 1,
                           lambda n: "u1" if n % 10 == 0 else buyers[n % buyer_count])
    return ctx, buyers


def measure(count, buyer_count=BUYERS, rounds=5):
    """{call: best CPU ms per call} at ``count`` existing orders."""
    ctx, buyers = _world(count, buyer_count)
    rng = random.Random(count)
    unpaid = []

    def new_order():
        user_id = buyers[rng.randrange(2, buyer_count)]
        lines = [(f"b{j}", 1) for j in rng.sample(range(BOOKS), 10)]
        unpaid.append((user_id, orders.new_order(ctx, user_id, "store", lines)))

    def payment():
        user_id, order_id = unpaid.pop()
        orders.payment(ctx, user_id, order_id)

    typical, busy = buyers[5], buyers[1]
    middle = ctx.db.orders.find_one({"seller_id": "seller", "state": "paid"},
                                    sort=[("created_at", -1), ("_id", -1)], skip=count // 2)
    half_way = orders._cursor(middle)
    return {
        "new_order": _best(new_order, 200, rounds),
        "payment": _best(payment, 200, rounds),
        "typical buyer's list": _best(
            lambda: orders.buyer_orders(ctx, typical, None, 1, 20), 50, rounds),
        "busy buyer's list": _best(
            lambda: orders.buyer_orders(ctx, busy, None, 1, 20), 5, min(rounds, 3)),
        "seller's paid list": _best(lambda: orders.seller_orders(
            ctx, "seller", None, "paid", 1, 20), 3, min(rounds, 3)),
        "seller's paid list after half": _best(lambda: orders.seller_orders(
            ctx, "seller", None, "paid", 1, 20, half_way), 3, min(rounds, 3)),
        "one sweep": _best(lambda: watcher.sweep(ctx), 20, rounds),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fe.bench.growth",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--orders", default="1000,100000",
                        help="existing order counts, comma-separated")
    args = parser.parse_args(argv)
    for count in (int(c) for c in args.orders.split(",")):
        figures = measure(count)
        print(f"{count:>8,} orders: " + ", ".join(f"{k} {v:.2f} ms" for k, v in figures.items()),
              flush=True)


if __name__ == "__main__":
    main()
