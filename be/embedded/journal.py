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
(0.3 ms in the server on the development machine's disk, next to 2.1-2.3 ms for
a request) and no thread hand-off: with a flusher thread in between, every reply
waited for two wake-ups of another thread, and a single client reached 60-80% of
the in-memory throughput instead of 84-86%. Under load a reply waits longer than
the disk (an fdatasync call returns after 1.1-1.2 ms at p50 at 4 clients, the
disk answering in 0.25 ms) because the thread must get the GIL back from the
request running meanwhile; doc/scaling.md says what was tried against that.

Changes nobody waits for (the sweeper's, a background fill, a request's writes
committed when it lets the engine go for CPU work) wake the flusher thread,
which flushes them the same way. Positions are byte counts since the process
opened the data folder (``appended``, ``durable``), so a waiter compares two
integers.

The file is written ahead with zeros (``allocated``), in steps that double from
64 KiB to 4 MiB, and records are then written over the zeros: an fdatasync after
an append that grows the file must also write the file's new size (its inode; on
a journaling filesystem, through the filesystem's journal), while one after a
write inside the file only flushes the data. On the development machine's ext4
disk that is 0.15 ms per fsync instead of 0.25 ms (2,000 fdatasyncs of 2.7 KB
records, a request's average record; 0.19 ms against 0.62 ms with both cores
busy), and the durable share of the in-memory throughput at 1 client went from
82-83% to 84-85%. PostgreSQL zero-fills its WAL segments for the same reason.
Growing by 4 MiB takes 12-19 ms, so the flusher thread does it in the background
once less than half a step is left; a flush only grows the file itself when it
would run past the zeros (a new file's first records). The zeros after the last
record are the journal's normal end (be.embedded.frames.read, ``zero_tail``),
and a clean close cuts them off.

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


GROW_MIN = 64 << 10  # the first step of zeros written ahead of the records
GROW_MAX = 4 << 20   # the largest step


def write_all(fd, data, offset):
    """Write ``data`` at ``offset`` of ``fd`` whole (pwrite may write less)."""
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done


def grow_step(allocated):
    """How many bytes of zeros to write ahead of a file ``allocated`` long."""
    return min(max(allocated, GROW_MIN), GROW_MAX)


class Journal:
    """One open journal file of generation ``generation`` (``size`` bytes in it
    so far, its header included), flushed by its waiters (see the module
    docstring) or, for changes nobody waits for, by the flusher thread.

    ``_flushing`` is (end position, Event) of the batch being written and synced,
    or None: at most one flush runs at a time, so the file is written in order.
    ``fd`` is open for writing (not appending): records go at ``size``, the end of
    the file's last intact record; the file may hold zeros past it."""

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
        self._offset = size         # where the next flush writes in the file
        self.allocated = os.fstat(fd).st_size  # bytes of the file: records, then zeros
        self._growing = False       # zeros are being written past ``allocated``
        self._grow_wanted = False   # the flusher should write the next step of zeros
        self._grown = threading.Condition(self._mutex)
        self.grows = 0              # steps of zeros written
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
        offset, self._offset = self._offset, self._offset + len(data)
        return data, files, offset, self.appended, self._fd, self._flushing[1]

    def _flush(self, data, files, offset, target, fd, event):
        """Write and sync one batch at ``offset`` (no lock held: others append
        meanwhile), the blob files its records name made durable first."""
        try:
            if files:
                for path in dict.fromkeys(files):
                    blobs.fsync_file(path)
                blobs.fsync_dir(os.path.dirname(files[0]))
                self.blob_syncs += 1
            end = offset + len(data)
            if end > self.allocated:
                self._grow(end, fd)
            write_all(fd, data, offset)
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
            if self.allocated - end < grow_step(self.allocated) // 2 and \
                    not (self._growing or self._grow_wanted):
                self._grow_wanted = True
                self._work.notify()
        event.set()

    def _grow(self, end, fd=None):
        """Make the current file at least ``end`` long with zeros past
        ``allocated``, in whole steps (one grower at a time; raises OSError).
        Flushes stay below ``allocated`` meanwhile, so the zeros never land on a
        record. ``fd``: only if it is still the current file."""
        with self._mutex:
            while self._growing:
                self._grown.wait()
            start = self.allocated
            if start >= end or (fd is not None and fd != self._fd):
                return
            fd = self._fd
            self._growing = True
        size, grown = start, False
        try:
            while size < end:
                size += grow_step(size)
            write_all(fd, bytes(size - start), start)
            _datasync(fd)
            grown = True
        finally:
            with self._mutex:
                self._growing = False
                if grown:
                    self.allocated = size
                    self.grows += 1
                self._grown.notify_all()

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
            while self._growing:  # it writes to the old file
                self._grown.wait()
            old, self._fd = self._fd, fd
            self.generation, self.path, self.size = generation, path, 0
            self._offset, self.allocated = 0, os.fstat(fd).st_size
        os.close(old)
        self.append(header)
        self.records = 0

    def close(self, trim=True):
        """Flush and sync what is left, stop the flusher, cut the zeros past the
        last record (unless not ``trim``: as a killed server leaves the file),
        close the file."""
        with self._mutex:
            self._stopping = True
            self._work.notify()
        self._thread.join()
        with self._mutex:
            self._stopped = True
        if trim and self.failed is None and self.durable >= self.appended:
            try:
                os.ftruncate(self._fd, self._offset)
                os.fsync(self._fd)
            except OSError as exc:  # the zeros stay: the next start reads past them
                log.warning("journal %s: the zeros past its end stay (%s)", self.path, exc)
        os.close(self._fd)

    def _flush_loop(self):
        """Flush changes nobody waits for; at close, everything left. After a
        failure the buffer holds only what was appended before it, which is
        still written (append refuses everything after)."""
        while True:
            with self._mutex:
                while not (self._orphans or self._stopping or self._grow_wanted):
                    self._work.wait()
                if self._grow_wanted and not self._stopping:
                    self._grow_wanted = False
                    end = self.allocated + 1
                    batch = event = None
                elif self._flushing is not None:
                    batch, event = None, self._flushing[1]
                elif self._buffer:
                    batch = self._take()
                elif self._stopping:
                    return
                else:
                    continue  # a waiter's flush took the orphans along
            if batch is not None:
                self._flush(*batch)
            elif event is not None:
                event.wait()
            else:
                try:
                    self._grow(end)
                except OSError as exc:  # a flush that needs the room grows it itself
                    log.warning("journal %s: zeros could not be written ahead (%s)",
                                self.path, exc)
