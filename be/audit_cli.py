"""Audit a bookstore database against its invariants (be.audit).

    MONGODB_URI=mongodb://host:27017/?replicaSet=rs0 [BOOKSTORE_DB=bookstore] \\
        python -m scripts.check_invariants [--settled]     (installed: bookstore-audit)

Checks that money is conserved (every user's deposits - withdrawals - payments +
refunds + credits equals their balance; in total, what was added equals all
balances plus what paid and shipped orders hold), that stock is conserved per
listing, that nothing is negative, that every order is in one legal state with a
legal history and consistent timestamps, that no order was both refunded and paid
out, that no marker of a finished step is left behind, and that every listing
shows a whole, unchanged description of its own book. Prints each violation
with the documents involved (password hashes omitted).

Exit status: 0 clean, 1 violations found, 2 no database configured. Run it on a
quiet database, or run it twice: a request in flight shows a step half done.
``--settled`` also reports orders still busy (use after the sweep has recovered).

The command line lives in be (not scripts/) so the ``bookstore-audit`` console
script of an installed package reaches it; scripts/check_invariants.py runs it
from a checkout.
"""
import argparse
import os
import sys

from be.audit import audit, summary

NO_DATABASE = (
    "check_invariants audits a real database: set MONGODB_URI (and BOOKSTORE_DB, default "
    "'bookstore'), e.g. MONGODB_URI=mongodb://localhost:27017/?replicaSet=rs0. The embedded "
    "engine lives inside the server process, so there is nothing here to audit; the test "
    "suite runs the same audit (be.audit.audit) on it.")


def run(db, where, settled=False, out=None):
    """Audit ``db``, print the report to ``out`` (stdout); return the exit status."""
    out = out or sys.stdout
    violations = audit(db, settled=settled)
    facts = summary(db)
    print(f"audited {where}: {facts['users']} users, {facts['listings']} listings, "
          f"orders {facts['orders']}, {facts['busy']} busy; money added "
          f"{facts['money']['added']}, balances {facts['money']['balances']}, held by orders "
          f"{facts['money']['held']} (cents); unreferenced descriptions "
          f"{facts['unreferenced']['descriptions']}, pictures "
          f"{facts['unreferenced']['pictures']}", file=out)
    if not violations:
        print("no violations", file=out)
        return 0
    for v in violations:
        print(v.render(), file=out)
    print(f"{len(violations)} violation(s)", file=out)
    return 1


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="check_invariants", description="Audit the bookstore database at MONGODB_URI.")
    parser.add_argument("--settled", action="store_true",
                        help="also report orders still busy (after recovery has run)")
    args = parser.parse_args(argv)
    uri = os.environ.get("MONGODB_URI", "")
    if not uri:
        print(NO_DATABASE, file=sys.stderr)
        return 2
    import pymongo
    name = os.environ.get("BOOKSTORE_DB", "bookstore")
    client = pymongo.MongoClient(uri, tz_aware=False)
    try:
        return run(client[name], f"{uri} database {name}", settled=args.settled)
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
