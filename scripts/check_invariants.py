"""Audit a MongoDB bookstore database against its invariants (exit 0 clean, 1
violations, 2 no database):

    MONGODB_URI=mongodb://host:27017/?replicaSet=rs0 python -m scripts.check_invariants [--settled]

The audit and its command line are be.audit_cli (installed: ``bookstore-audit``).
"""
import sys

from be.audit_cli import main

if __name__ == "__main__":
    sys.exit(main())
