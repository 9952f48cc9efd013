"""The journal file and its group commit: appended under the engine lock, made
durable by one flusher thread, waited for by whoever acknowledges.

Appending is a copy into a buffer (no system call under the engine lock). The
flusher thread writes whatever has been appended and fsyncs it (fdatasync where
the platform has it), then wakes everyone waiting. Requests that finish while a
flush is in progress all wait for the next one, which covers every one of them:
on the development machine an fsync takes 2-4 ms, about as long as a new_order,
so with a few request threads each fsync carries several requests' records
(``syncs`` vs ``records`` say how many). Positions are byte counts since the
process opened the data folder (``appended``, ``durable``), so a waiter compares
two integers.

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


# Longest the flusher waits for a request that holds the engine to append its
# record before it syncs what it has.
GATHER_S = 0.002


class Journal:
    """One open journal file of generation ``generation`` (``size`` bytes in it
    so far, its header included) and the flusher thread that syncs it.

    Appends go to ``_buffer``; the flusher takes the whole buffer, writes and
    syncs it, then sets the Event of that batch. A waiter waits on the Event of
    the batch holding its position (the one being flushed, or the next one), so
    a flush wakes exactly the requests it made durable, and appending wakes the
    flusher only when it is idle."""

    def __init__(self, fd, generation, size, path):
        self._mutex = threading.Lock()
        self._work = threading.Condition(self._mutex)  # the flusher waits for appends
        self._buffer = bytearray()  # appended, not yet taken by the flusher
        self._files = []            # blob files the buffer's records name
        self._next = threading.Event()      # set once the buffer's batch is durable
        self._flushing = None       # (end position, Event) of the batch being flushed
        self._idle = False          # the flusher waits on _work
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
        self.busy = None            # () -> True while a request holds the engine
        self._thread = threading.Thread(target=self._flush_loop, name="journal-flusher",
                                        daemon=True)
        self._thread.start()

    def append(self, data, files=()):
        """Add one framed record (the caller holds the engine lock); returns the
        position a reply depending on it must wait for. ``files`` (paths of blob
        files the record names, be.embedded.blobs) are fsynced, and their folder,
        before the record is written."""
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
            if self._idle:
                self._idle = False
                self._work.notify()
            return self.appended

    def wait(self, position):
        """Return once everything up to ``position`` is on disk; raise
        errors.NotDurable if it never will be (the disk failed, or the journal was
        closed first)."""
        while self.durable < position:
            with self._mutex:
                if self.durable >= position:
                    return
                if self.failed is not None:
                    raise errors.NotDurable(
                        "the data folder can no longer be written; the change was not saved")
                if self._stopped:
                    raise errors.NotDurable("the server is shutting down; retry")
                flushing = self._flushing
                event = flushing[1] if flushing and flushing[0] >= position else self._next
            event.wait()

    def fail(self, exc):
        """Stop: nothing appended from now on is written, no waiter is released.
        Returns a position that will never be durable."""
        with self._mutex:
            if self.failed is None:
                self.failed = exc
            events = [self._next] + ([self._flushing[1]] if self._flushing else [])
            position = self.appended + 1
        for event in events:  # wake the waiters: they see ``failed`` and give up
            event.set()
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
            event = self._next
        event.set()  # late waiters see _stopped
        os.close(self._fd)

    def _flush_loop(self):
        while True:
            with self._mutex:
                while not self._buffer and not self._stopping:
                    self._idle = True
                    self._work.wait()
                self._idle = False
                if not self._buffer:
                    return
                if self.busy is not None and self.busy() and not self._stopping:
                    # a request holds the engine and will append in a moment: let
                    # its record share this fsync rather than pay for the next one
                    self._idle = True
                    self._work.wait(GATHER_S)
                    self._idle = False
                data, self._buffer = self._buffer, bytearray()
                files, self._files = self._files, []
                event, self._next = self._next, threading.Event()
                target, fd = self.appended, self._fd
                self._flushing = (target, event)
            try:
                if files:  # the blob files these records name, durable first
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
