"""A data folder: the embedded engine's documents kept on disk.

Files (N a generation number, 8 digits)::

    LOCK                  held (flock) by the one server using the folder
    blobs/<sha256>        a large binary value (a picture) of a document (be.embedded.blobs)
    snapshot-N.bson       every collection as it was around the time journal N began
    journal-N.log         every change since journal N began, one record per commit
    *.tmp                 a snapshot being written (ignored and removed at start-up)
    journal-N.log.torn-O  bytes set aside from a damaged journal's tail (offset O)

Both kinds of file are sequences of frames (be.embedded.frames). A journal starts
with a header frame; each later frame is one commit of be.embedded.journaled: the
after-images of the documents one lock holder changed. A snapshot is a header
frame, frames of up to a few milliseconds' worth of one collection's documents
(each led by the collection's name and indexes), and a trailer frame; it only
counts once its trailer is there, and it is only ever renamed into place whole.

**Start-up** loads the newest snapshot N (if any), replays journal N and every
later one in order, and stops at the first torn or corrupt record: the bytes from
there on are set aside in a ``.torn-<offset>`` file, the journal is cut there,
and the server continues appending to it. Zeros after a journal's last record
are not damage: the journal writes its records over zeros written ahead
(be.embedded.journal), and the server goes on writing over them. A damaged
snapshot refuses the start (it is never half written, so damage there is the
disk's, not a crash's). Then the index maps are built, so the first request is
not the one that pays.

**Snapshots** are taken when the journal has grown past its bound
(``journal_bound``: the larger of ``journal_limit``, 64 MiB by default, and a
quarter of the last snapshot) in a background thread, and at clean shutdown. So
a restart after a crash replays at most that much on top of the snapshot (about
a quarter more than a clean restart: 64 MiB on top of 204 MB at 40,000 books and
100,000 orders), and the data is rewritten once per quarter of its size written
to the journal: a bounded share of the writes.
First, under the engine lock, the journal moves to generation N+1 (everything
in N durable first); then the documents are read collection by collection, the
lock taken per chunk of a few milliseconds' encoding, while requests go on.
Such a snapshot is fuzzy: a document may be read before or after a change that
journal N+1 also holds. Replaying N+1's after-images over it gives the exact
state, because the last after-image of each document is its final state. Before
the snapshot is renamed into place, journal N+1 is made durable up to the moment
the last chunk was read, so the snapshot never holds a change the journal could
still lose. Then: fsync, rename, fsync of the folder, removal of snapshot N and
journal N.
"""
import gc
import logging
import os
import re
import threading
import time

import bson
from mongomock.helpers import hashdict

from be.embedded import blobs, frames, indexmaps, journaled
from be.embedded.journal import Journal
from be.errors import StartupError

log = logging.getLogger("bookstore")

FORMAT = 1
_SNAPSHOT = re.compile(r"^snapshot-(\d{8})\.bson$")
_JOURNAL = re.compile(r"^journal-(\d{8})\.log$")
CHUNK_SECONDS = 0.005  # longest a snapshot holds the engine lock per chunk
# collections at least this large get their index maps filled in the background
BACKGROUND_MAPS_FROM = 10_000


def snapshot_name(generation):
    return f"snapshot-{generation:08d}.bson"


def journal_name(generation):
    return f"journal-{generation:08d}.log"


def _journal_header(generation):
    return frames.encode({"bookstore": "journal", "format": FORMAT, "generation": generation})


class _Lock:
    """The folder's LOCK file, held with an exclusive non-blocking lock for as long
    as the server runs (the kernel releases it if the process dies)."""

    def __init__(self, folder):
        path = os.path.join(folder, "LOCK")
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock_file(self.fd)
        except OSError:
            holder = os.read(self.fd, 64).decode("ascii", "replace").strip()
            os.close(self.fd)
            raise StartupError(
                f"data folder {folder} is in use by another bookstore server"
                f"{f' (pid {holder})' if holder else ''}: stop it, or give this one "
                f"another --data-dir") from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"{os.getpid()}\n".encode())

    def release(self):
        os.close(self.fd)


def _lock_file(fd):
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


class DataDir:
    """The open data folder of one embedded engine: ``server`` holds the loaded
    documents (mongomock stores, journaled); ``lock`` is the engine lock."""

    def __init__(self, path, lock, journal_limit=64 << 20):
        self.path = os.path.abspath(path)
        self.lock = lock
        self.journal_limit = journal_limit
        self.snapshot_size = 0
        self._snapshot_mutex = threading.Lock()
        self._snapshot_thread = None
        self.closed = False
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as exc:
            raise StartupError(f"cannot use data folder {self.path}: "
                               f"{exc.strerror or exc}") from None
        if not os.path.isdir(self.path):
            raise StartupError(f"data folder {self.path} is not a folder")
        try:
            self._lock = _Lock(self.path)
        except PermissionError as exc:
            raise StartupError(f"cannot use data folder {self.path}: {exc.strerror}") from None
        # Loading makes millions of objects and no garbage: the cyclic collector
        # would walk them again and again while they are made (12 s instead of 7.6 s
        # for 40,000 books and 100,000 orders), and once more right after. So it is
        # off while loading, and what was loaded is frozen (gc.freeze: never walked
        # again; reference counting still frees what is replaced) until close.
        collecting = gc.isenabled()
        gc.disable()
        try:
            self.blobs = blobs.BlobStore(self.path)
            self.blobs.open()
            self.tracker = journaled.Tracker(on_commit=self._maybe_snapshot, blobs=self.blobs)
            self.server = journaled.JournaledServer(self.tracker)
            self.report = self._load()
            gc.freeze()
        except BaseException:
            if getattr(self, "blobs", None) is not None:
                self.blobs.close()
            self._lock.release()
            raise
        finally:
            if collecting:
                gc.enable()

    # ------------------------------------------------------------ start-up

    def _files(self):
        snapshots, journals = [], []
        for name in os.listdir(self.path):
            if name.endswith(".tmp"):
                os.remove(os.path.join(self.path, name))  # a snapshot never finished
            elif m := _SNAPSHOT.match(name):
                snapshots.append(int(m.group(1)))
            elif m := _JOURNAL.match(name):
                journals.append(int(m.group(1)))
        return sorted(snapshots), sorted(journals)

    def _load(self):
        started = time.perf_counter()
        snapshots, journals = self._files()
        base = snapshots[-1] if snapshots else None
        loaded = self._load_snapshot(base) if base is not None else 0
        first = base if base is not None else (journals[0] if journals else 1)
        to_replay = [g for g in journals if g >= first]
        expected = list(range(first, first + len(to_replay)))
        if to_replay and to_replay != expected:
            missing = sorted(set(range(first, to_replay[-1] + 1)) - set(to_replay))
            raise StartupError(
                f"data folder {self.path}: {journal_name(missing[0])} is missing between "
                f"{(snapshot_name(base) if base is not None else journal_name(first))} and "
                f"{journal_name(to_replay[-1])}; changes after it cannot be replayed")
        records = kept = end = 0
        damage = None
        current = first
        for n, generation in enumerate(to_replay):
            current = generation
            kept, end, damage = self._replay(generation)
            records += kept
            if damage is not None:
                for later in to_replay[n + 1:]:  # never replayed past a damaged record
                    name = os.path.join(self.path, journal_name(later))
                    os.replace(name, name + ".discarded")
                    log.warning("data folder: %s set aside as %s.discarded (it follows a "
                                "damaged record)", journal_name(later), journal_name(later))
                break
        self.journal = self._open_journal(current, end if current in to_replay else 0)
        self.journal.records = kept if current in to_replay else 0
        self.tracker.journal = self.journal
        for old in snapshots[:-1]:  # left by a clean-up a crash interrupted
            os.remove(os.path.join(self.path, snapshot_name(old)))
        for old in journals:
            if old < first:
                os.remove(os.path.join(self.path, journal_name(old)))
        if base is not None:
            self.snapshot_size = os.path.getsize(os.path.join(self.path, snapshot_name(base)))
        # the index maps: a small collection's now, a large one's filled in the
        # background while the server already serves (queries scan meanwhile)
        self.map_fillers = []
        large = [store for _, store in self.server.collections()
                 if len(store._documents) >= BACKGROUND_MAPS_FROM]
        for _, store in self.server.collections():
            if store not in large:
                indexmaps._secondary(store)
        remaining = [len(large)]
        mutex = threading.Lock()

        def done(store, seconds):
            with mutex:
                remaining[0] -= 1
                last = not remaining[0]
            log.info("data folder: index maps of %s filled (%s documents, %.1f s in the "
                     "background)%s", store.name, f"{len(store._documents):,}", seconds,
                     f"; all index maps ready {time.perf_counter() - started:.1f} s after "
                     f"loading began" if last else "")

        for store in large:
            filler = indexmaps.fill_in_background(store, self.lock, on_done=done)
            if filler is not None:
                self.map_fillers.append(filler)
            else:
                done(store, 0.0)
        if not large:
            log.info("data folder: all index maps ready %.1f s after loading began",
                     time.perf_counter() - started)
        counts = {f"{store.name}": len(store._documents)
                  for _, store in self.server.collections()}
        return {"snapshot": base, "snapshot_documents": loaded, "journal": current,
                "records": records, "damage": damage, "counts": counts,
                "seconds": time.perf_counter() - started}

    def _load_snapshot(self, generation):
        path = os.path.join(self.path, snapshot_name(generation))
        documents = 0
        ended = False
        try:
            with open(path, "rb") as f:
                reader = frames.read(f)
                header = frames.decode(next(reader)[1])[0]
                if header.get("bookstore") != "snapshot" or header.get("generation") != generation:
                    raise frames.Damaged(0, f"not snapshot {generation}: {header}")
                for _, payload in reader:
                    if ended:
                        raise frames.Damaged(f.tell(), "data after the trailer")
                    docs = frames.decode(payload)
                    meta = docs[0]
                    if meta.get("end"):
                        if meta.get("documents") != documents:
                            raise frames.Damaged(f.tell(), "trailer count differs")
                        ended = True
                        continue
                    store = self.server[meta["db"]][meta["c"]]
                    if "ix" in meta:
                        journaled.set_indexes(store, meta["ix"], meta.get("created", False))
                    target = store._documents
                    fields = indexmaps._indexed_fields(store)
                    compact, key_of = indexmaps.compact, indexmaps._store_key
                    for doc in docs[1:]:
                        target[key_of(doc["_id"])] = compact(doc, fields)
                    documents += len(docs) - 1
        except StopIteration:
            raise StartupError(f"{path} is empty: the data folder cannot be loaded; "
                               f"restore the folder from a backup") from None
        except (frames.Damaged, bson.errors.BSONError, KeyError) as exc:
            raise StartupError(f"{path} is damaged ({exc}): the data folder cannot be "
                               f"loaded; restore it from a backup") from None
        if not ended:
            raise StartupError(f"{path} has no trailer: the data folder cannot be loaded; "
                               f"restore it from a backup")
        return documents

    def _replay(self, generation):
        """Apply journal ``generation``'s records; cut it at the first damaged one.
        Returns (records applied, the end of the last one, damage description or
        None)."""
        path = os.path.join(self.path, journal_name(generation))
        kept, good_end, damage = 0, 0, None
        stores = {}  # (database, collection) -> store
        with open(path, "rb") as f:
            try:
                reader = frames.read(f, zero_tail=True)
                for offset, payload in reader:
                    ops = frames.decode(payload)
                    if offset == 0:
                        header = ops[0]
                        if header.get("bookstore") != "journal" or \
                                header.get("generation") != generation:
                            raise StartupError(f"{path} is not journal {generation}: "
                                               f"{header}")
                    else:
                        for op in ops:
                            where = (op["db"], op["c"])
                            known = stores.get(where)
                            if known is None:
                                store = self.server[where[0]][where[1]]
                                known = stores[where] = (
                                    store, indexmaps._indexed_fields(store))
                            store, fields = known
                            doc = op.get("put")
                            if doc is not None:  # the common case, inline
                                key = doc["_id"]
                                store._documents[hashdict(key) if type(key) is dict
                                                 else key] = indexmaps.compact(doc, fields)
                            else:
                                journaled.apply(self.server, op)
                                stores.pop(where)  # its indexes may have changed
                        kept += 1
                    good_end = offset + frames.HEADER.size + len(payload)
            except frames.Damaged as exc:
                damage = exc
            except bson.errors.BSONError as exc:  # a checksum that matched garbage
                damage = frames.Damaged(good_end, f"undecodable record ({exc})")
            size = f.seek(0, os.SEEK_END)
        if damage is None:
            return kept, good_end, None
        tail = f"{path}.torn-{damage.offset}"
        with open(path, "rb") as f:
            f.seek(damage.offset)
            with open(tail, "wb") as out:
                out.write(f.read())
        with open(path, "r+b") as f:
            f.truncate(damage.offset)
            os.fsync(f.fileno())
        what = (f"{journal_name(generation)}: torn or corrupt record at byte "
                f"{damage.offset} ({damage.why}); replayed the {kept} records before it, "
                f"set aside the {size - damage.offset} bytes from there in "
                f"{os.path.basename(tail)}")
        log.warning("data folder %s: %s", self.path, what)
        return kept, damage.offset, what

    def _open_journal(self, generation, end):
        """Journal ``generation`` open to go on after its last intact record, which
        ends at byte ``end`` (zeros may follow: be.embedded.journal)."""
        path = os.path.join(self.path, journal_name(generation))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        journal = Journal(fd, generation, end, path)
        if end == 0:  # new, or cut before its header was whole
            journal.append(_journal_header(generation))
            journal.records = 0
            journal.sync()
            blobs.fsync_dir(self.path)
        return journal

    def describe_load(self):
        r = self.report
        parts = [f"snapshot {r['snapshot']} ({r['snapshot_documents']:,} documents)"
                 if r["snapshot"] is not None else "no snapshot"]
        parts.append(f"journal {r['journal']}: {r['records']:,} records replayed"
                     + (" up to a damaged record (set aside, see above)" if r["damage"] else ""))
        counts = ", ".join(f"{name} {n:,}" for name, n in sorted(r["counts"].items()) if n)
        return (f"data folder {self.path}: {'; '.join(parts)}; loaded in {r['seconds']:.2f} s"
                f" ({counts or 'empty'})")

    # ------------------------------------------------------------ snapshots

    def _maybe_snapshot(self):
        """After each commit (engine lock held): start a background snapshot once
        the journal has grown past its bound."""
        journal = self.journal
        if journal.size <= self.journal_bound() or self.closed:
            return
        if self._snapshot_thread is not None and self._snapshot_thread.is_alive():
            return
        self._snapshot_thread = threading.Thread(target=self._background_snapshot,
                                                 name="snapshot", daemon=True)
        self._snapshot_thread.start()

    def journal_bound(self):
        """How large the journal may grow before a snapshot replaces it."""
        return max(self.journal_limit, self.snapshot_size // 4)

    def _background_snapshot(self):
        try:
            self.snapshot()
        except Exception:
            log.exception("snapshot failed; the journal keeps every change meanwhile")

    def snapshot(self):
        """Write a new snapshot while requests go on (see the module docstring);
        returns its generation."""
        with self._snapshot_mutex:
            started = time.perf_counter()
            with self.lock:
                self.tracker.commit()
                generation = self.journal.generation + 1
                path = os.path.join(self.path, journal_name(generation))
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                self.journal.switch(fd, generation, path, _journal_header(generation))
                collections = [(db_name, store, list(store._documents))
                               for db_name, store in self.server.collections()]
            blobs.fsync_dir(self.path)
            final = os.path.join(self.path, snapshot_name(generation))
            tmp = final + ".tmp"
            documents = 0
            with open(tmp, "wb") as f:
                f.write(frames.encode({"bookstore": "snapshot", "format": FORMAT,
                                       "generation": generation}))
                for db_name, store, keys in collections:
                    documents += self._write_collection(f, db_name, store, keys)
                with self.lock:  # every change a chunk may have read is in the journal
                    position = self.journal.appended
                self.journal.wait(position)
                f.write(frames.encode({"end": True, "documents": documents}))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
            blobs.fsync_dir(self.path)
            self.snapshot_size = os.path.getsize(final)
            for name in os.listdir(self.path):
                m = _SNAPSHOT.match(name) or _JOURNAL.match(name)
                if m and int(m.group(1)) < generation:
                    os.remove(os.path.join(self.path, name))
            log.info("data folder: snapshot %d written (%s documents, %.1f MB) in %.2f s",
                     generation, f"{documents:,}", self.snapshot_size / 1e6,
                     time.perf_counter() - started)
            return generation

    def _write_collection(self, f, db_name, store, keys):
        """One collection's documents, in frames of CHUNK_SECONDS of encoding each
        (the engine lock held per chunk); returns how many were written."""
        written, start, first = 0, 0, True
        while first or start < len(keys):
            with self.lock:
                meta = {"db": db_name, "c": store.name}
                if first:
                    meta["ix"] = journaled.index_specs(store)
                    meta["created"] = bool(store._is_force_created)
                blobs = [bson.encode(meta)]
                documents = store._documents
                deadline = time.perf_counter() + CHUNK_SECONDS
                while start < len(keys):
                    doc = documents.get(keys[start])
                    start += 1
                    if doc is not None:
                        blobs.append(bson.encode(doc))
                    if not start % 64 and time.perf_counter() > deadline:
                        break
            f.write(frames.frame(b"".join(blobs)))
            written += len(blobs) - 1
            first = False
        return written

    # ------------------------------------------------------------ shutdown

    def close(self, snapshot=True):
        """Clean shutdown: a snapshot (when the journal holds any change since the
        last one), the journal flushed and closed, the folder unlocked. Without
        ``snapshot`` the files stay as a killed server leaves them (the journal
        keeps its zeros written ahead), only with everything acknowledged durable."""
        if self.closed:
            return
        for filler in self.map_fillers:
            filler.join()
        if self._snapshot_thread is not None:
            self._snapshot_thread.join()
        if snapshot and self.journal.records and self.journal.failed is None:
            self.snapshot()
        with self.lock:
            self.tracker.commit()
            self.closed = True
        self.journal.close(trim=snapshot)
        self.blobs.close()
        self._lock.release()
        gc.unfreeze()
