"""Entry point: ``python app.py [--host H] [--port P] [--threads N] [--demo]``.

Serves the API with waitress (a production WSGI server that runs on Linux,
macOS and Windows). Without MONGODB_URI the embedded engine is used and the
timeout watcher runs in this process. The server itself is be.server (also
installed as the ``bookstore-server`` command); this file keeps the
``python app.py`` spelling working from a checkout.
"""
from be.server import main

if __name__ == "__main__":
    main()
