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

``--data-dir`` audits an embedded engine's data folder instead, loaded in this
process: only while no server uses it (the folder's lock refuses otherwise), so
it is at rest; a step a crash left half done is finished by the server's sweep
once it runs again.

Exit status: 0 clean, 1 violations found, 2 no database configured (or the data
folder cannot be loaded). Run it on a quiet database, or run it twice: a request
in flight shows a step half done.
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
    "'bookstore'), e.g. MONGODB_URI=mongodb://localhost:27017/?replicaSet=rs0, or give "
    "--data-dir DIR for a stopped embedded server's data folder. An in-memory embedded "
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
    parser.add_argument("--data-dir", metavar="DIR", default=None,
                        help="audit a stopped embedded server's data folder instead")
    args = parser.parse_args(argv)
    if args.data_dir:
        return _run_folder(args.data_dir, args.settled)
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


def _run_folder(folder, settled):
    from be.embedded import EmbeddedEngine
    from be.errors import StartupError
    if not os.path.isdir(folder):
        print(f"check_invariants: {folder} is not a data folder", file=sys.stderr)
        return 2
    try:
        engine = EmbeddedEngine(folder)
    except StartupError as exc:
        print(f"check_invariants: {exc}", file=sys.stderr)
        return 2
    try:
        name = os.environ.get("BOOKSTORE_DB", "bookstore")
        return run(engine.database(name), f"data folder {engine.storage.path}", settled=settled)
    finally:
        engine.storage.close(snapshot=False)  # an audit changes nothing


if __name__ == "__main__":
    sys.exit(main())
