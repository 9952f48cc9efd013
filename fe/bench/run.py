"""Load generator: new_order + payment against the trivial GET /ping, side by side.

    python -m fe.bench --url http://127.0.0.1:5000/ --threads 1,4,16,64 --seconds 10 --lines 10
    python -m fe.bench --start-server --threads 1,4,16,64 --seconds 5
    python -m fe.bench --start-server --orders-before 100000 --threads 16 --seconds 5
    python -m fe.bench --url http://127.0.0.1:5000/ --threads 64 --processes 4

Sets up sellers, stores, books and funded buyers over HTTP (fe.access), then for
each client concurrency N, in the same run: N threads call GET /ping for the
given time (the ceiling: what any call can reach on this server and machine),
then N threads each order (``--lines`` distinct books) and pay, as their own
buyer with their own token and keep-alive session, for the same time. Prints
throughput (paid orders per second), p50/p99 of each call in ms and as a
multiple of /ping's p50, and the failed calls.

The machine is shared by the client, the server and whatever else runs there, so
each level also reports the load average and, per phase, the CPU used by the
server (when it listens on this machine and its process is visible), by this
bench and by everything else: a busy machine is not a slow server. One Python
process's threads share one GIL, so at high concurrency the bench itself can set
/ping's rate: each level's threads are spread over client processes, one per
core by default (``--processes``), and the bench says when a client process was
the limit.
"""
import argparse
import logging
import multiprocessing
import os
import queue
import random
import threading
import time
from collections import Counter, defaultdict
from urllib.parse import urlsplit

from fe.access.client import get
from fe.bench import workload

# issue 7's targets, printed next to the figures (never asserted by a test)
TARGET_P50_X_PING = 3.0
TARGET_P99_X_P50 = 10.0


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m fe.bench", description=__doc__.split("\n")[0])
    p.add_argument("--mode", choices=("orders", "search", "durability", "restart", "abuse"),
                   default="orders",
                   help="orders (this bench), search (fe.bench.search_bench), durability "
                        "(fe.bench.durability), restart (fe.bench.restart) or abuse "
                        "(fe.bench.abuse)")
    p.add_argument("--url", default=None, help="server to load (default fe.conf.URL)")
    p.add_argument("--start-server", action="store_true",
                   help="serve an in-process server (waitress, free port, engine from the "
                        "environment: embedded unless MONGODB_URI is set) and load that")
    p.add_argument("--server-threads", type=int, default=None,
                   help="request threads of the --start-server server (default: app.py's "
                        "for the engine, be.server.default_threads)")
    p.add_argument("--data-dir", default=None,
                   help="with --start-server on the embedded engine: keep the data in this "
                        "folder (journal, fsync before each reply) instead of in memory")
    p.add_argument("--threads", default="1,4,16,64", help="client thread counts, comma-separated")
    p.add_argument("--processes", type=int, default=0,
                   help="client processes sharing each level's threads, at most one per "
                        "thread (default 0: one per core). One process's threads share one "
                        "GIL: on 2 cores a single client process set /ping's rate from 4 "
                        "threads up, so /ping looked slower and every ratio better than "
                        "the server's")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each timed phase")
    p.add_argument("--lines", type=int, default=10, help="order lines (distinct books) per order")
    p.add_argument("--sellers", type=int, default=2, help="sellers, one store each")
    p.add_argument("--books", type=int, default=100, help="books per store")
    p.add_argument("--orders-before", type=int, default=0,
                   help="existing paid orders to preload before measuring (model layer with "
                        "--start-server, HTTP otherwise)")
    args = p.parse_args(argv)
    try:
        args.thread_counts = [int(t) for t in args.threads.split(",") if t.strip()]
    except ValueError:
        p.error("--threads takes whole numbers separated by commas, e.g. 1,4,16,64")
    if not args.thread_counts or min(args.thread_counts) < 1:
        p.error("--threads: each count must be at least 1")
    if args.processes < 0:
        p.error("--processes must be 0 (one per core) or more")
    args.processes = args.processes or os.cpu_count() or 1
    if args.lines < 1 or args.books < args.lines:
        p.error("--lines must be at least 1 and at most --books")
    if args.start_server and args.url:
        p.error("give --url or --start-server, not both")
    return args


# ---------------------------------------------------------------- server

def start_server(threads, data_dir=None):
    """An in-process server as app.py makes it; (server, url, backend, sweeper).
    The embedded engine keeps its data in memory unless ``data_dir`` names a folder."""
    from be.server import default_threads, make_server, tune_for_serving
    from be.api import create_app
    from be.backend import Backend
    from be.config import MEMORY, Settings

    backend = Backend(Settings.from_env(data_dir=data_dir or MEMORY))
    threads = threads or default_threads(backend)
    tune_for_serving()
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # queueing is the load's point
    # poll: closing the server later cannot break a select() on its closed sockets
    srv = make_server(create_app(backend), "127.0.0.1", 0, threads, asyncore_use_poll=True)
    threading.Thread(target=srv.run, name="bench-server", daemon=True).start()
    sweeper = None
    if backend.settings.embedded:  # as app.py runs it: the timeout sweep is part of the load
        from be.watcher import Sweeper
        sweeper = Sweeper(backend).start()
    return srv, f"http://127.0.0.1:{srv.effective_port}/", backend, sweeper


# ---------------------------------------------------------------- the machine

def local_server_pid(url):
    """The process listening on ``url``'s port on this machine, or None (Linux only:
    the listening socket in /proc/net/tcp*, then the process holding it)."""
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        return None
    port = parts.port or 80
    sockets = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = [line.split() for line in f][1:]
        except OSError:
            continue
        sockets |= {f"socket:[{r[9]}]" for r in rows  # state 0A: listening
                    if r[3] == "0A" and int(r[1].rsplit(":", 1)[1], 16) == port}
    if not sockets:
        return None
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in sockets
                   for fd in os.listdir(f"/proc/{pid}/fd")):
                return int(pid)
        except OSError:  # gone, or not ours to look at
            continue
    return None


def _process_cpu_s(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    except (OSError, ValueError, IndexError):
        return None


def _machine_busy_s():
    """CPU seconds all cores spent busy since boot (Linux), or None."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
        return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait
    except (OSError, ValueError, IndexError):
        return None


def _bench_cpu_s():
    """CPU seconds of this process and of its client processes that have ended."""
    t = os.times()
    return time.process_time() + t.children_user + t.children_system


class CpuMeter:
    """CPU used during a phase, in cores (1.0 = one core busy throughout): the whole
    machine's, this bench's, the server's and every other process's. ``server_pid``:
    the server's process, "bench" when it runs in this one (its CPU is the bench's),
    None when unknown (then so are the server's and the others' shares)."""

    def __init__(self, server_pid):
        self.server_pid = server_pid if server_pid != "bench" else None
        self.in_bench = server_pid == "bench"

    def __enter__(self):
        self._start = (time.perf_counter(), _bench_cpu_s(), _machine_busy_s(),
                       _process_cpu_s(self.server_pid) if self.server_pid else None)
        return self

    def __exit__(self, *exc):
        wall0, bench0, machine0, server0 = self._start
        wall = time.perf_counter() - wall0
        self.bench = (_bench_cpu_s() - bench0) / wall
        machine = _machine_busy_s()
        self.machine = None if None in (machine, machine0) else (machine - machine0) / wall
        server = _process_cpu_s(self.server_pid) if self.server_pid else None
        self.server = None if None in (server, server0) else (server - server0) / wall
        known = self.in_bench or self.server is not None
        self.others = (max(0.0, self.machine - self.bench - (self.server or 0.0))
                       if known and self.machine is not None else None)
        return False

    def as_dict(self):
        return {"machine": self.machine, "bench": self.bench, "server": self.server,
                "server_in_bench": self.in_bench, "others": self.others}


def load_average():
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


# a phase in which other processes kept this much of a core busy measured a busy
# machine, not just this server
BUSY_OTHERS = 0.25
# one interpreter's threads share a GIL: a bench using this much of a core is the limit
CLIENT_BOUND = 0.9


# ---------------------------------------------------------------- measuring

class Recorder:
    """Latencies and failures of one thread (merged after the phase, across client
    processes too)."""

    def __init__(self):
        self.seconds = defaultdict(list)
        self.failures = Counter()
        self.paid = 0

    def __call__(self, call, seconds, ok, detail):
        self.seconds[call].append(seconds)
        if not ok:
            self.failures[(call, detail)] += 1

    def merge(self, seconds, failures, paid):
        for call, values in seconds.items():
            self.seconds[call].extend(values)
        self.failures.update(failures)
        self.paid += paid


def _phase(n_threads, seconds, url, body, everyone=None):
    """Run ``body(n, deadline, recorder)`` in n threads, started together once each
    has opened its connection (and, with ``everyone``, a multiprocessing barrier,
    once every client process's threads have); returns (Recorder, elapsed seconds)."""
    recorders = [Recorder() for _ in range(n_threads)]
    connected = threading.Barrier(n_threads + 1)
    go = threading.Event()
    window = {}

    def thread(n):
        get(url + "ping", {})  # connect (keep-alive) before the clock starts
        connected.wait()
        go.wait()
        body(n, window["deadline"], recorders[n])

    threads = [threading.Thread(target=thread, args=(n,), daemon=True) for n in range(n_threads)]
    for t in threads:
        t.start()
    connected.wait()
    if everyone is not None:
        everyone.wait()
    window["deadline"] = time.perf_counter() + seconds
    started = time.perf_counter()
    go.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    merged = Recorder()
    for r in recorders:
        merged.merge(r.seconds, r.failures, r.paid)
    return merged, elapsed


def _ping_body(url):
    def body(n, deadline, rec):
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                code = get(url + "ping", {}).status_code
            except Exception as exc:
                code = type(exc).__name__
            rec("ping", time.perf_counter() - t0, code == 200, code)
    return body


def _orders_body(world, lines, first=0):
    """Thread n orders as buyer ``first + n`` (its own token and connection)."""
    def body(n, deadline, rec):
        buyer = world.buyers[first + n]
        store_id, book_ids = world.store_of(first + n)
        rng = random.Random(first + n)
        while time.perf_counter() < deadline:
            if workload.order_and_pay(buyer, store_id, book_ids, lines, rng, rec):
                rec.paid += 1
    return body


def _client_process(kind, first, n_threads, seconds, url, world, lines, everyone, results):
    """One client process of a phase: its share of the threads; sends its figures back."""
    body = _ping_body(url) if kind == "ping" else _orders_body(world, lines, first)
    rec, elapsed = _phase(n_threads, seconds, url, body, everyone)
    results.put((dict(rec.seconds), dict(rec.failures), rec.paid, elapsed))


def _phase_in_processes(kind, n_threads, seconds, url, world, lines, processes):
    """A phase whose n threads are spread over ``processes`` client processes (each a
    GIL of its own), all started together; returns (merged Recorder, elapsed)."""
    shares = [n_threads // processes + (k < n_threads % processes) for k in range(processes)]
    # spawn, not fork: a forked child would inherit locks held by this process's other
    # threads (an in-process server's among them)
    ctx = multiprocessing.get_context("spawn")
    everyone, results = ctx.Barrier(processes), ctx.Queue()
    children, first = [], 0
    for share in shares:
        children.append(ctx.Process(target=_client_process, daemon=True, args=(
            kind, first, share, seconds, url, world, lines, everyone, results)))
        first += share
    for child in children:
        child.start()
    merged, elapsed, got = Recorder(), 0.0, 0
    try:
        while got < len(children):
            try:
                seconds_by_call, failures, paid, took = results.get(timeout=1)
            except queue.Empty:
                if any(child.is_alive() for child in children):
                    continue
                raise RuntimeError(f"bench: a client process of the {kind} phase ended "
                                   "without its figures (see its error above)")
            merged.merge(seconds_by_call, failures, paid)
            elapsed, got = max(elapsed, took), got + 1
    finally:
        for child in children:
            child.join(timeout=30)
    return merged, elapsed


def measure_ping(url, n_threads, seconds, processes=1):
    if min(processes, n_threads) > 1:
        return _phase_in_processes("ping", n_threads, seconds, url, None, 0,
                                   min(processes, n_threads))
    return _phase(n_threads, seconds, url, _ping_body(url))


def measure_orders(world, n_threads, seconds, lines, processes=1):
    if min(processes, n_threads) > 1:
        return _phase_in_processes("orders", n_threads, seconds, world.url, world, lines,
                                   min(processes, n_threads))
    return _phase(n_threads, seconds, world.url, _orders_body(world, lines))


def percentile(values, q):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


# ---------------------------------------------------------------- reporting

def level(n_threads, ping, ping_s, orders, orders_s, cpu=None, load=None, processes=1):
    """The figures of one concurrency level, as a dict (what the smoke test reads).
    ``cpu``: {"ping": CpuMeter, "orders": CpuMeter}; ``load``: the load average;
    ``processes``: the client processes the threads ran in."""
    base = percentile(ping.seconds["ping"], 50)
    calls = {}
    for name, rec in (("ping", ping), ("new_order", orders), ("payment", orders)):
        values = rec.seconds.get(name, [])
        p50, p99 = percentile(values, 50), percentile(values, 99)
        calls[name] = {
            "calls": len(values),
            "failed": sum(c for (call, _), c in rec.failures.items() if call == name),
            "p50_ms": p50 * 1000, "p99_ms": p99 * 1000,
            "p50_x_ping": p50 / base, "p99_x_ping": p99 / base, "p99_x_p50": p99 / p50,
        }
    return {
        "threads": n_threads,
        "ping_per_s": len(ping.seconds["ping"]) / ping_s,
        "paid": orders.paid,
        "paid_per_s": orders.paid / orders_s,
        "failures": sum(ping.failures.values()) + sum(orders.failures.values()),
        "failure_kinds": dict(ping.failures + orders.failures),
        "calls": calls,
        "processes": min(processes, n_threads),
        "load": load,
        "cpu": {phase: meter.as_dict() for phase, meter in (cpu or {}).items()},
    }


def busy_machine(r):
    """True when other processes took a real share of the CPU during a phase."""
    return any((c["others"] or 0.0) > BUSY_OTHERS for c in r["cpu"].values())


def print_level(r, out=print):
    where = f" in {r['processes']} client processes" if r["processes"] > 1 else ""
    out(f"\n== {r['threads']} client thread(s){where} ==")
    out(f"  {'call':<10}{'calls':>8}{'p50 ms':>9}{'p99 ms':>9}{'p50/ping':>10}"
        f"{'p99/ping':>10}{'p99/p50':>9}{'failed':>8}")
    for name, c in r["calls"].items():
        out(f"  {name:<10}{c['calls']:>8}{c['p50_ms']:>9.2f}{c['p99_ms']:>9.2f}"
            f"{c['p50_x_ping']:>9.1f}x{c['p99_x_ping']:>9.1f}x{c['p99_x_p50']:>8.1f}x"
            f"{c['failed']:>8}")
    out(f"  ping: {r['ping_per_s']:.0f} calls/s   paid orders: {r['paid_per_s']:.1f}/s "
        f"({r['paid']} paid)   failures: {r['failures']}")
    if r["cpu"]:
        def pct(v):
            return "?" if v is None else f"{v * 100:.0f}%"
        load = "?" if r["load"] is None else f"{r['load']:.2f}"
        out(f"  machine: load average {load} on {os.cpu_count()} cores; CPU (100% = one core) "
            + "; ".join(f"{phase}: all {pct(c['machine'])} = bench {pct(c['bench'])}"
                        + (" (server inside)" if c["server_in_bench"]
                           else f" + server {pct(c['server'])}")
                        + f" + others {pct(c['others'])}" for phase, c in r["cpu"].items()))
        if busy_machine(r):
            out("  NOTE: other processes were busy during this level: its figures measure a "
                "shared machine, not this server alone")
        ping_cpu = r["cpu"].get("ping", {})
        per_process = ping_cpu.get("bench", 0.0) / r["processes"]
        if per_process >= CLIENT_BOUND and not ping_cpu.get("server_in_bench"):
            out("  NOTE: each bench process kept a whole core busy during /ping: the client, "
                "not the server, set /ping's rate at this level (try more --processes)")
    for (call, detail), count in sorted(r["failure_kinds"].items(), key=str):
        out(f"    {call} failed {count}x: {detail}")


def print_summary(results, args, out=print):
    out(f"\nsummary ({args.lines} lines per order, {args.seconds:g} s per phase; "
        f"targets: p50 <= {TARGET_P50_X_PING:g}x ping p50, p99 <= {TARGET_P99_X_P50:g}x p50, "
        f"no failures)")
    out(f"  {'threads':>7}{'ping/s':>9}{'paid/s':>9}{'new_order p50':>15}{'p99/p50':>9}"
        f"{'payment p50':>13}{'p99/p50':>9}{'failed':>8}  targets  machine")
    for r in results:
        no, pay = r["calls"]["new_order"], r["calls"]["payment"]
        met = (r["failures"] == 0 and all(
            c["p50_x_ping"] <= TARGET_P50_X_PING and c["p99_x_p50"] <= TARGET_P99_X_P50
            for c in (no, pay)))
        out(f"  {r['threads']:>7}{r['ping_per_s']:>9.0f}{r['paid_per_s']:>9.1f}"
            f"{no['p50_x_ping']:>14.1f}x{no['p99_x_p50']:>8.1f}x"
            f"{pay['p50_x_ping']:>12.1f}x{pay['p99_x_p50']:>8.1f}x{r['failures']:>8}"
            f"  {'met' if met else 'MISSED':<7}  {_machine_note(r)}")


def _machine_note(r):
    load = "" if r["load"] is None else f"load {r['load']:.1f}"
    others = [c["others"] for c in r["cpu"].values() if c["others"] is not None]
    if others:
        load += f"{', ' if load else ''}others {max(others) * 100:.0f}%"
    return load + (" BUSY" if busy_machine(r) else "")


def run(args, out=print):
    """Set up, preload, measure every level; returns the list of level dicts."""
    server = backend = sweeper = None
    if args.start_server:
        server, url, backend, sweeper = start_server(args.server_threads, args.data_dir)
        out(f"started in-process server at {url} ({backend.engine.describe()}), "
            f"{server.adj.threads} request threads")
    else:
        from fe import conf
        url = args.url or conf.URL
    if not url.endswith("/"):
        url += "/"
    server_pid = "bench" if server is not None else local_server_pid(url)
    if server_pid == os.getpid():  # the tests' server runs in the bench's process
        server_pid = "bench"
    try:
        world = workload.setup(url, buyers=max(args.thread_counts), sellers=args.sellers,
                               books=args.books, log=out)
        if args.orders_before:
            if backend is not None:
                workload.preload_model(backend, world, args.orders_before, log=out)
            else:
                workload.preload_http(world, args.orders_before, args.lines, log=out)
        results = []
        for n in args.thread_counts:
            load = load_average()
            with CpuMeter(server_pid) as ping_cpu:
                ping, ping_s = measure_ping(url, n, args.seconds, args.processes)
            with CpuMeter(server_pid) as orders_cpu:
                orders, orders_s = measure_orders(world, n, args.seconds, args.lines,
                                                  args.processes)
            results.append(level(n, ping, ping_s, orders, orders_s,
                                 {"ping": ping_cpu, "orders": orders_cpu}, load,
                                 args.processes))
            print_level(results[-1], out)
        print_summary(results, args, out)
        return results
    finally:
        if sweeper is not None:
            sweeper.stop()
        if server is not None:
            server.task_dispatcher.shutdown()  # let in-flight requests finish first
            server.close()


def main(argv=None):
    args = parse_args(argv)
    results = run(args)
    return 1 if any(r["failures"] for r in results) else 0
