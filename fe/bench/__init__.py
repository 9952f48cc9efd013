"""Load generators: ``python -m fe.bench`` (see fe.bench.run)."""
