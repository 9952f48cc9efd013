"""A real bookstore server in a background thread of this process, served the way
``python app.py`` serves; the REST tests and the benches start theirs through it."""
import threading

from be.server import make_server
from be.api import create_app


class ThreadedServer:
    def __init__(self, backend, threads=8):
        self.backend = backend
        self.server = make_server(create_app(backend), "127.0.0.1", 0, threads,
                                  asyncore_use_poll=True)
        self.url = f"http://127.0.0.1:{self.server.effective_port}/"
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        try:
            self.server.run()
        except OSError:  # the listening socket closed under the loop at stop()
            pass

    def stop(self):
        self.server.task_dispatcher.shutdown()
        self.server.close()
