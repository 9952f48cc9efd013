"""The journal file and its group commit: appended under the engine lock, made
durable by whoever waits for it first.

Appending is a copy into a buffer (no system call under the engine lock). A
request that has released the engine and must wait for its record becomes the
*leader* when no flush is in progress: it takes everything appended so far,
writes and fsyncs it (fdatasync where the platform has it) in its own thread,
then wakes the requests that waited on that flush. Requests that finish while a
flush is in progress wait for it to end; then one of them leads the next flush,
which covers all of them (group commit: ``syncs`` vs ``records`` say how many
records each fsync carried). A lone client therefore pays one fsync per request
(0.2 ms on the development machine's disk, next to about 2 ms for a new_order)
and no thread hand-off: with a flusher thread in between, every reply waited
for two wake-ups of another thread, and a single client reached 60-80% of the
in-memory throughput instead of 90%+.

Changes nobody waits for (the sweeper's, a background fill, a request's writes
committed when it lets the engine go for CPU work) wake the flusher thread,
which flushes them the same way. Positions are byte counts since the process
opened the data folder (``appended``, ``durable``), so a waiter compares two
integers.

If a write or fsync fails, the journal stops (``failed``): nothing appended from
then on is ever reported durable, so no request is acknowledged for a change the
disk may not hold; a restart recovers what was durable.
"""
import logging
import os
import threading

from be import errors
from be.embedded import blobs

log = logging.getLogger("bookstore")

_datasync = getattr(os, "fdatasync", os.fsync)  # macOS has only fsync


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Journal:
    """One open journal file of generation ``generation`` (``size`` bytes in it
    so far, its header included), flushed by its waiters (see the module
    docstring) or, for changes nobody waits for, by the flusher thread.

    ``_flushing`` is (end position, Event) of the batch being written and synced,
    or None: at most one flush runs at a time, so the file is written in order."""

    def __init__(self, fd, generation, size, path):
        self._mutex = threading.Lock()
        self._work = threading.Condition(self._mutex)  # the flusher waits for orphans
        self._buffer = bytearray()  # appended, not yet taken by a flush
        self._orphans = False       # the buffer holds a change nobody will wait for
        self._files = []            # blob files the buffer's records name
        self._flushing = None       # (end position, Event) of the batch being flushed
        self._fd = fd
        self.path = path
        self.generation = generation
        self.size = size            # bytes in the current file, buffered ones included
        self.appended = 0           # position after the last appended byte
        self.durable = 0            # position up to which the file is fsynced
        self.records = 0            # frames appended to the current file
        self.records_total = 0      # frames appended since the folder was opened
        self.syncs = 0              # fsyncs done (group commit: records per sync)
        self.blob_syncs = 0         # flushes that fsynced blob files first
        self.failed = None          # the OSError that stopped the journal
        self._stopping = False
        self._stopped = False
        self._thread = threading.Thread(target=self._flush_loop, name="journal-flusher",
                                        daemon=True)
        self._thread.start()

    def append(self, data, waited_for=False, files=()):
        """Add one framed record (the caller holds the engine lock); returns the
        position a reply depending on it must wait for. ``waited_for``: the
        caller will wait for that position itself (and flush it if nobody is);
        otherwise the flusher thread is woken to flush it. ``files`` (paths of
        blob files the record names, be.embedded.blobs) are fsynced, and their
        folder, before the record is written."""
        with self._mutex:
            if self.failed is not None:  # the file ends at the failure: never durable
                return self.appended + 1
            if files:
                self._files.extend(files)
            self._buffer += data
            self.appended += len(data)
            self.size += len(data)
            self.records += 1
            self.records_total += 1
            if not waited_for and not self._orphans:
                self._orphans = True
                self._work.notify()
            return self.appended

    def wait(self, position):
        """Return once everything up to ``position`` is on disk, flushing it in
        this thread when no flush is in progress; raise errors.NotDurable if it
        never will be (the disk failed, or the journal was closed first)."""
        while self.durable < position:
            with self._mutex:
                if self.durable >= position:
                    return
                if self.failed is not None:
                    raise errors.NotDurable(
                        "the data folder can no longer be written; the change was not saved")
                if self._stopped:
                    raise errors.NotDurable("the server is shutting down; retry")
                batch = self._take() if self._flushing is None else None
                event = self._flushing[1]
            if batch is not None:
                self._flush(*batch)
            else:
                event.wait()  # the flush in progress; then this one or the next

    def _take(self):
        """Start a flush of everything appended so far (the caller holds _mutex)."""
        data, self._buffer, self._orphans = self._buffer, bytearray(), False
        files, self._files = self._files, []
        self._flushing = (self.appended, threading.Event())
        return data, files, self.appended, self._fd, self._flushing[1]

    def _flush(self, data, files, target, fd, event):
        """Write and sync one batch (no lock held: others append meanwhile), the
        blob files its records name made durable first."""
        try:
            if files:
                for path in dict.fromkeys(files):
                    blobs.fsync_file(path)
                blobs.fsync_dir(os.path.dirname(files[0]))
                self.blob_syncs += 1
            write_all(fd, data)
            _datasync(fd)
        except OSError as exc:
            log.critical("journal %s cannot be written (%s): no further change will be "
                         "acknowledged; restart the server once the disk is fixed",
                         self.path, exc)
            self.fail(exc)
            return
        with self._mutex:
            self.durable = target
            self.syncs += 1
            self._flushing = None
        event.set()

    def fail(self, exc):
        """Stop: nothing appended from now on is written, no waiter is released.
        Returns a position that will never be durable."""
        with self._mutex:
            if self.failed is None:
                self.failed = exc
            flushing, self._flushing = self._flushing, None
            position = self.appended + 1
        if flushing is not None:  # wake its waiters: they see ``failed`` and give up
            flushing[1].set()
        return position

    def sync(self):
        """Wait until everything appended so far is durable."""
        self.wait(self.appended)

    def switch(self, fd, generation, path, header):
        """Continue in a new file (the caller holds the engine lock, so nothing is
        appended meanwhile): everything in the old one is made durable first, so a
        later file never holds a record whose predecessors could be lost."""
        self.sync()
        with self._mutex:
            old, self._fd = self._fd, fd
            self.generation, self.path, self.size = generation, path, 0
        os.close(old)
        self.append(header)
        self.records = 0

    def close(self):
        """Flush and sync what is left, stop the flusher, close the file."""
        with self._mutex:
            self._stopping = True
            self._work.notify()
        self._thread.join()
        with self._mutex:
            self._stopped = True
        os.close(self._fd)

    def _flush_loop(self):
        """Flush changes nobody waits for; at close, everything left. After a
        failure the buffer holds only what was appended before it, which is
        still written (append refuses everything after)."""
        while True:
            with self._mutex:
                while not (self._orphans or self._stopping):
                    self._work.wait()
                if self._flushing is not None:
                    batch, event = None, self._flushing[1]
                elif self._buffer:
                    batch = self._take()
                elif self._stopping:
                    return
                else:
                    continue  # a waiter's flush took the orphans along
            if batch is not None:
                self._flush(*batch)
            else:
                event.wait()
