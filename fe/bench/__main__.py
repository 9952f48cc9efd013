"""``python -m fe.bench [--mode MODE] ...``, MODE one of orders, search,
durability, restart, import, abuse, memory: the orders bench (fe.bench.run), the
search bench (fe.bench.search_bench), what a data folder costs in paid orders/s
(fe.bench.durability), how long a restart on a large data folder takes
(fe.bench.restart), how long importing 40,000 books over the API and re-running
that import take (fe.bench.import_bench), a victim's latency while others abuse
the server (fe.bench.abuse), or what a real server holds in memory with a large
catalogue loaded over HTTP (fe.bench.memory)."""
import argparse
import importlib
import importlib.util
import sys

from fe.bench import run


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--mode", choices=("orders", "search", "durability", "restart", "import",
                                        "abuse", "memory"),
                     default="orders")
    known, rest = pre.parse_known_args(argv)
    if known.mode in ("durability", "restart", "abuse", "memory"):
        return importlib.import_module(f"fe.bench.{known.mode}").main(rest)
    if known.mode == "import":
        return importlib.import_module("fe.bench.import_bench").main(rest)
    if known.mode == "search":
        if importlib.util.find_spec("fe.bench.search_bench") is None:
            sys.exit("python -m fe.bench: --mode search needs fe/bench/search_bench.py")
        return importlib.import_module("fe.bench.search_bench").main(rest)
    return run.main(rest)


if __name__ == "__main__":
    sys.exit(main())
