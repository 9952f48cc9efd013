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


def test_memory_bench_loads_searches_and_restarts_a_real_server(tmp_path):
    from fe.bench import memory
    lines = []
    args = memory.parse_args(["--rows", "40", "--pictures", "--data-dir", str(tmp_path / "d"),
                              "--restart"])
    figures = memory.run(args, out=lines.append)
    assert set(figures) == {"start", "empty", "loaded", "searched", "pictures", "restarted",
                            "restarted_searched"}
    assert all(mib > 0 for mib in figures.values()), figures
    assert (tmp_path / "d" / "blobs").is_dir()  # the pictures are in files of the folder
    assert "memory with 40 books in 4 stores" in lines[-1]
