"""Write a synthetic book.db (the course schema) for tests, demos and benches.

    python -m scripts.gen_books OUT.db --rows 40000 --seed 1

The generator itself is be.sample_books (the server's --demo uses it too); this
is its command line. Same seed and rows, byte-identical rows.
"""
import argparse
import sys
import time

from be.sample_books import generate


def main(argv=None):
    parser = argparse.ArgumentParser(description="Generate a synthetic book.db (course schema).")
    parser.add_argument("out", help="SQLite file to write (overwritten if it exists)")
    parser.add_argument("--rows", type=int, default=1000, help="number of books (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    if args.rows < 0:
        parser.error("--rows must be >= 0")
    started = time.perf_counter()
    generate(args.out, args.rows, args.seed)
    print("wrote %d books to %s (seed %d) in %.1fs"
          % (args.rows, args.out, args.seed, time.perf_counter() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
