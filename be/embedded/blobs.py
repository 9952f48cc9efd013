"""Large binary values of a data folder's documents, kept in files, not in memory.

A book's pictures are most of a catalogue's bytes: the course's ``book.db`` holds
about 30 KB of picture per book, so 40,000 such books would keep over 1 GB of
picture bytes in the server's memory, next to some 250 MB for everything else.
With a data folder, a ``bytes`` value of at least ``MIN_BYTES`` at the top level of
a document that is stored whole (an insert, an upsert: how pictures are written,
be.model.catalogue) is written to ``blobs/<sha256 of the bytes>`` in the folder,
and the document keeps a reference in its place: a BSON binary of the
user-defined subtype ``SUBTYPE`` holding the digest and the length (40 bytes;
``BlobRef`` in memory).
The reference is what the journal and the snapshots hold; a read returns the
bytes, read from the file when the document is copied out
(``be.embedded.copies._copy_field``), so a picture costs memory only while it is
being served.

Durability: the file is written (to a temporary name, then renamed) when the
document is stored, under the engine lock, without waiting for the disk; the
journal's flusher fsyncs it, and the folder ``blobs``, before it writes the
journal record that references it (``journal.Journal.append(..., files)``). So a
record on disk never names a file that a crash could lose, and no fsync is done
under the engine lock. A crash before the record is durable leaves at most a file
no record names (kept: content addressed, it is reused if the same bytes come
again). A file found already in place is reused only if its bytes hash to its
name; otherwise it is written again.

Not moved out: values in sub-documents or arrays, values of indexed fields,
values written by an in-place update (``$set``; a replacement), and the pictures
of a folder written before this (read back as they were stored, inline): the
bookstore writes pictures only by upsert. A filter cannot match the bytes of a
moved value (it sees the reference); nothing in the bookstore filters on them.
Without a data folder nothing changes: everything is in memory anyway.
"""
import hashlib
import os
import struct

import bson

SUBTYPE = 0x8B  # a user-defined BSON binary subtype (0x80-0xFF): a reference here
MIN_BYTES = 1024  # smaller values stay in the document (a file costs a disk block)
FOLDER = "blobs"

_LENGTH = struct.Struct("<Q")
_OPEN = []  # the BlobStores of the open data folders (content addressed: any will do)


class BlobRef(bytes):
    """A reference as a stored document holds it: its 40 bytes, encoded by BSON as
    a binary of subtype ``SUBTYPE`` (``_type_marker`` 5 is what makes pymongo's
    encoder take a ``bson.Binary``). No per-object dict, unlike ``bson.Binary``:
    about 80 bytes a reference instead of about 290 (40,000 pictures: 11 MB less)."""
    __slots__ = ()
    _type_marker = 5
    subtype = SUBTYPE

    def __deepcopy__(self, memo):
        return self

    def __copy__(self):
        return self


def is_ref(value):
    """A reference, as stored (BlobRef) or as BSON decodes it (``bson.Binary``)."""
    kind = type(value)
    return kind is BlobRef or (kind is bson.Binary and value.subtype == SUBTYPE)


def _ref(digest, length):
    return BlobRef(digest + _LENGTH.pack(length))


class BlobStore:
    """The ``blobs`` folder of one data folder."""

    def __init__(self, folder):
        self.folder = folder
        self.path = os.path.join(folder, FOLDER)
        self.made = os.path.isdir(self.path)  # made with the first value kept
        if self.made:
            for name in os.listdir(self.path):
                if name.endswith(".tmp"):  # a write a crash interrupted
                    os.remove(os.path.join(self.path, name))
        self.written = 0  # files written since opened

    def file(self, digest):
        return os.path.join(self.path, digest.hex())

    def put(self, data):
        """Write ``data`` to its file unless it is there intact; returns (the
        reference, the file's path)."""
        digest = hashlib.sha256(data).digest()
        path = self.file(digest)
        if not self.made:  # once in the folder's life: its entry durable at once
            os.makedirs(self.path, exist_ok=True)
            fsync_dir(self.folder)
            self.made = True
        if not self._intact(path, digest, len(data)):
            tmp = path + ".tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
            self.written += 1
        return _ref(digest, len(data)), path

    @staticmethod
    def _intact(path, digest, length):
        try:
            with open(path, "rb") as f:
                found = f.read(length + 1)
        except FileNotFoundError:
            return False
        return len(found) == length and hashlib.sha256(found).digest() == digest

    def read(self, ref):
        """The bytes ``ref`` names, or None when the file is not here."""
        digest, (length,) = bytes(ref[:32]), _LENGTH.unpack(ref[32:40])
        try:
            with open(self.file(digest), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        return data if len(data) == length else None

    def open(self):
        _OPEN.append(self)

    def close(self):
        if self in _OPEN:
            _OPEN.remove(self)


def resolve(ref):
    """The bytes of a reference, from the folder of any open data folder (they
    are named by their hash, so every copy is the same)."""
    for store in _OPEN:
        data = store.read(ref)
        if data is not None:
            return data
    raise RuntimeError(f"the data folder has lost the file {bytes(ref[:32]).hex()} "
                       f"({FOLDER}/): restore the folder from a backup")


def fsync_file(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path):
    if os.name == "nt":  # a folder cannot be opened for fsync there
        return
    fsync_file(path)
