"""Timeout watcher entry point: ``python scripts/watcher.py`` (same as
``python -m be.watcher``). Needs MONGODB_URI pointing at a replica set; with the
embedded engine ``python app.py`` runs the sweep itself and this exits with 2."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from be.watcher import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
