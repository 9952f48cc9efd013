"""Timeout watcher entry point: ``python -m scripts.watcher`` (same as
``python -m be.watcher``, installed: ``bookstore-watcher``). Needs MONGODB_URI
pointing at a replica set; with the embedded engine ``python app.py`` runs the
sweep itself and this exits with 2."""
import sys

from be.watcher import main

if __name__ == "__main__":
    sys.exit(main())
