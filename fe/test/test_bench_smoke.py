"""fe.bench runs end to end against the session's server, and fe.bench.growth on its
own embedded engine (figures not judged)."""
from fe import conf
from fe.bench import run


def test_bench_completes_paid_orders_without_failures():
    lines = []
    args = run.parse_args(["--url", conf.URL, "--threads", "2", "--seconds", "0.5",
                           "--lines", "3", "--sellers", "1", "--books", "20"])
    results = run.run(args, out=lines.append)
    (level,) = results
    assert level["threads"] == 2
    assert level["failures"] == 0, level["failure_kinds"]
    assert level["paid"] > 0 and level["calls"]["payment"]["calls"] == level["paid"]
    assert level["calls"]["ping"]["calls"] > 0
    assert any("paid orders" in line for line in lines)  # the report was printed


def test_growth_bench_measures_every_call():
    from fe.bench import growth
    figures = growth.measure(30, buyer_count=8, rounds=1)
    assert list(figures) == ["new_order", "payment", "typical buyer's list",
                             "busy buyer's list", "seller's paid list",
                             "seller's paid list after half", "one sweep"]
    assert all(ms > 0 for ms in figures.values()), figures


def test_import_bench_imports_reruns_and_measures_the_lock():
    """python -m fe.bench --mode import against the session's server, small."""
    from fe.bench import import_bench
    lines = []
    args = import_bench.parse_args(["--url", conf.URL, "--rows", "60", "--stores", "2",
                                    "--hold-books", "150"])
    results = import_bench.run(args, out=lines.append)
    assert results["given"]["import_s"] > 0 and results["given"]["rerun_s"] > 0
    assert results["holds"]["hold_max_ms"] > 0
    said = "\n".join(lines)
    assert "30 books, 30 imported, 0 already listed" in said
    assert "30 books, 0 imported, 30 already listed" in said
