"""What durability costs: paid orders per second with a data folder vs in memory.

    python -m fe.bench --mode durability --threads 1,4,16,64 --seconds 5 --rounds 2

Two in-process servers on the embedded engine, made as ``python app.py`` makes
them (each with be.server.default_threads for its settings unless
``--server-threads``): one in memory (``--memory``), one on a data folder (a
temporary one unless ``--data-dir``), where every reply waits for its journal
record's fsync (group commit: be.embedded.journal). Each gets the same world
(sellers, books, funded buyers over HTTP). Then, for each client concurrency,
the orders phase of fe.bench.run (new_order + payment per buyer thread) runs
``--rounds`` times on each server, alternating which goes first, so that a
machine busy with something else weighs on both alike. Prints paid orders/s of
each, the durable one as a share of the in-memory one (the target: at least
85%), the lowest and highest share of a single round (how much the machine
moved the figure: on the development machine two runs differ by 2-4 points),
and the journal's records per fsync (how much group commit shared).
"""
import argparse
import os
import shutil
import tempfile

from fe.bench import run, workload

TARGET_SHARE = 0.85


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m fe.bench --mode durability",
                                description=__doc__.split("\n")[0])
    p.add_argument("--threads", default="1,4,16,64", help="client thread counts, comma-separated")
    p.add_argument("--seconds", type=float, default=5.0, help="length of each orders phase")
    p.add_argument("--rounds", type=int, default=2, help="phases per server per level")
    p.add_argument("--lines", type=int, default=10, help="order lines per order")
    p.add_argument("--processes", type=int, default=0,
                   help="client processes per level (default 0: one per core)")
    p.add_argument("--server-threads", type=int, default=None,
                   help="request threads of both servers (default: be.server.default_threads)")
    p.add_argument("--durable-threads", type=int, default=None,
                   help="request threads of the durable server only (default: as "
                        "--server-threads)")
    p.add_argument("--data-dir", default=None,
                   help="the durable server's folder (default: a temporary one, removed)")
    args = p.parse_args(argv)
    args.thread_counts = [int(t) for t in args.threads.split(",") if t.strip()]
    args.processes = args.processes or os.cpu_count() or 1
    if os.environ.get("MONGODB_URI"):
        p.error("the durability comparison is for the embedded engine: unset MONGODB_URI")
    return args


def _journal(backend):
    return backend.engine.embedded.storage.journal


def run_comparison(args, out=print):
    """Returns a list of {threads, memory, durable, share, rounds, records_per_sync}
    (``rounds``: each round's durable share, in order)."""
    folder = args.data_dir or tempfile.mkdtemp(prefix="bookstore-bench-")
    servers = {}
    try:
        for name, data_dir in (("memory", None), ("durable", folder)):
            threads = args.server_threads
            if name == "durable" and args.durable_threads:
                threads = args.durable_threads
            srv, url, backend, sweeper = run.start_server(threads, data_dir)
            servers[name] = (srv, url, backend, sweeper)
            out(f"{name}: {backend.engine.describe()}, {srv.adj.threads} request threads")
        worlds = {name: workload.setup(url, buyers=max(args.thread_counts), sellers=2,
                                       books=100, log=out)
                  for name, (_, url, _, _) in servers.items()}
        results = []
        for n in args.thread_counts:
            paid = {"memory": 0, "durable": 0}
            seconds = {"memory": 0.0, "durable": 0.0}
            journal = _journal(servers["durable"][2])
            records0, syncs0 = journal.records_total, journal.syncs
            shares = []
            for r in range(args.rounds):
                order = ("memory", "durable") if r % 2 == 0 else ("durable", "memory")
                rate = {}
                for name in order:
                    rec, elapsed = run.measure_orders(worlds[name], n, args.seconds,
                                                      args.lines, args.processes)
                    if rec.failures:
                        out(f"  {name}: failures {dict(rec.failures)}")
                    paid[name] += rec.paid
                    seconds[name] += elapsed
                    rate[name] = rec.paid / elapsed if elapsed else 0.0
                shares.append(rate["durable"] / rate["memory"] if rate["memory"] else 0.0)
            rates = {name: paid[name] / seconds[name] for name in paid}
            syncs = journal.syncs - syncs0
            row = {"threads": n, "memory": rates["memory"], "durable": rates["durable"],
                   "share": rates["durable"] / rates["memory"] if rates["memory"] else 0.0,
                   "rounds": shares,
                   "records_per_sync": (journal.records_total - records0) / syncs
                   if syncs else 0.0}
            results.append(row)
            out(f"  {n:>3} client threads: in memory {row['memory']:.1f} paid orders/s, "
                f"durable {row['durable']:.1f}/s = {row['share'] * 100:.0f}% "
                f"(rounds {_spread(shares)}; {row['records_per_sync']:.1f} journal records "
                f"per fsync)")
        out(f"\ndurability cost ({args.lines} lines per order, {args.rounds} x "
            f"{args.seconds:g} s per server per level; target: durable >= "
            f"{TARGET_SHARE * 100:.0f}% of in memory)")
        out(f"  {'threads':>7}{'memory/s':>10}{'durable/s':>11}{'share':>8}{'rounds':>10}"
            f"{'rec/fsync':>11}  target")
        for row in results:
            out(f"  {row['threads']:>7}{row['memory']:>10.1f}{row['durable']:>11.1f}"
                f"{row['share'] * 100:>7.1f}%{_spread(row['rounds']):>10}"
                f"{row['records_per_sync']:>11.1f}  "
                f"{'met' if row['share'] >= TARGET_SHARE else 'MISSED'}")
        return results
    finally:
        for srv, _, backend, sweeper in servers.values():
            if sweeper is not None:
                sweeper.stop()
            srv.task_dispatcher.shutdown()
            srv.close()
            backend.close()
        if args.data_dir is None:
            shutil.rmtree(folder, ignore_errors=True)


def _spread(shares):
    """'83-88%': the lowest and highest share of single rounds."""
    if not shares:
        return "-"
    low, high = min(shares) * 100, max(shares) * 100
    return f"{low:.0f}%" if round(low) == round(high) else f"{low:.0f}-{high:.0f}%"


def main(argv=None):
    run_comparison(parse_args(argv))
    return 0
