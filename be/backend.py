"""The service context: database, clock, settings and password hasher, handed to
every model function. It knows nothing of HTTP."""
from be.clock import Clock
from be.config import Settings
from be.db import Engine
from be.passwords import PasswordHasher


class Backend:
    def __init__(self, settings=None, clock=None, engine=None):
        self.settings = settings or Settings.from_env()
        self.engine = engine or Engine(self.settings)
        self.db = self.engine.db
        self.clock = clock or Clock()
        self.passwords = PasswordHasher(self.settings.password_method,
                                        outside=self.engine.cpu_work)

    def cpu_work(self):
        """Wrap CPU work that reads no data (see be.db.Engine.cpu_work)."""
        return self.engine.cpu_work()

    def close(self):
        """Clean shutdown of the engine (be.db.Engine.close)."""
        self.engine.close()
