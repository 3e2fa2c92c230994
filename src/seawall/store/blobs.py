"""`BlobStore`: content-addressed files, named by their sha256, so a stored blob never changes.

Layout: `<root>/sha256/<first two hex digits>/<digest>`, and `<root>/tmp/` for writes in
progress. `put` streams its source in 1 MiB chunks through sha256 into a temporary file, then
renames it into place: a blob exists whole or not at all, even across a crash (a crash may leave
a file in `tmp/`, never a partial blob). Putting the same content again changes nothing.

The root is a local directory, made durable by fsync of the file and of its directory before
`put` returns; or any fsspec URL: `memory://` for tests, `s3://bucket/prefix` once s3fs is
installed (S3 stores an object whole or not at all; the rename there is a server-side copy).

Blocking: on the event loop, call it through `asyncio.to_thread`.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from seawall.store.errors import StoreError

__all__ = [
    "CHUNK_BYTES",
    "BlobCorruptError",
    "BlobNotFoundError",
    "BlobSource",
    "BlobStore",
    "is_digest",
]

#: Bytes read and hashed at a time: large enough to be fast, small enough to bound memory.
CHUNK_BYTES = 1 << 20

_DIGEST = re.compile(r"[0-9a-f]{64}")

#: What `put` stores: the bytes themselves, a local file's path, or an open binary stream.
BlobSource = bytes | bytearray | memoryview | str | os.PathLike[str] | BinaryIO


class BlobNotFoundError(StoreError):
    """No blob with this digest in the store."""

    code = "blob_not_found"


class BlobCorruptError(StoreError):
    """A blob's content no longer hashes to its name."""

    code = "blob_corrupt"


def is_digest(text: str) -> bool:
    """True for a sha256 digest as the store names blobs: 64 lowercase hex digits."""
    return _DIGEST.fullmatch(text) is not None


class BlobStore:
    """A content-addressed store at a local directory or an fsspec URL."""

    def __init__(
        self, root: str | os.PathLike[str], *, cache_dir: str | Path | None = None
    ) -> None:
        """`cache_dir`: where `get` copies blobs of a remote store to (a local `BlobStore`)."""
        text = os.fspath(root)
        self._files: _Files = (
            _FsspecFiles(text)
            if "://" in text and not text.startswith("file://")
            else _LocalFiles(Path(text.removeprefix("file://")).expanduser().resolve())
        )
        self._cache = None if cache_dir is None else BlobStore(cache_dir)

    @property
    def root(self) -> str:
        """The store's root: an absolute local path or the URL given."""
        return self._files.root

    @property
    def is_local(self) -> bool:
        return isinstance(self._files, _LocalFiles)

    def put(self, source: BlobSource) -> str:
        """Store `source` (bytes, a local path, or a binary stream); return its sha256."""
        with _reader(source) as stream:
            return self._files.put(stream)

    def has(self, digest: str) -> bool:
        return self._files.exists(_name(digest))

    def digests(self) -> list[str]:
        """Every blob's digest, sorted (files in `tmp/` and stray names are not blobs)."""
        return sorted(self._files.digests())

    def size(self, digest: str) -> int:
        """The blob's size in bytes."""
        return self._files.size(_name(digest))

    def uri(self, digest: str) -> str:
        """Where the blob is: a local path or a URL (for a registry's artifact URI)."""
        return self._files.location(_name(digest))

    @contextlib.contextmanager
    def open(self, digest: str) -> Iterator[BinaryIO]:
        """The blob, open for reading."""
        with self._files.open(_name(digest)) as stream:
            yield stream

    def get(self, digest: str) -> Path:
        """A local path to the blob: its own in a local store, a verified copy from a remote one.

        A local blob is not re-hashed (call `verify`); a remote one is hashed as it is copied
        into `cache_dir`, and a copy that does not match raises `BlobCorruptError`.
        """
        name = _name(digest)
        if isinstance(self._files, _LocalFiles):
            if not self._files.exists(name):
                raise BlobNotFoundError(f"blob {digest} not in {self.root}")
            return self._files.path(name)
        if self._cache is None:
            raise StoreError(f"blob store {self.root} is not local: give it a cache_dir for get()")
        if not self._cache.has(digest):
            with self.open(digest) as stream:
                copied = self._cache.put(stream)
            if copied != digest:
                self._cache.discard(copied)
                raise BlobCorruptError(f"blob {digest} in {self.root} hashes to {copied}")
        return self._cache.get(digest)

    def verify(self, digest: str) -> bool:
        """Re-hash the blob: True if its content still matches its name."""
        sha = hashlib.sha256()
        with self.open(digest) as stream:
            while chunk := stream.read(CHUNK_BYTES):
                sha.update(chunk)
        return hmac.compare_digest(sha.hexdigest(), digest)

    def discard(self, digest: str) -> None:
        """Remove the blob if present (for a corrupt or unreferenced one)."""
        self._files.remove(_name(digest))

    def __repr__(self) -> str:
        return f"BlobStore({self.root!r})"


def _name(digest: str) -> str:
    if not is_digest(digest):
        # Also keeps a caller's text out of the path: no `..`, no slash.
        raise ValueError(f"digest: expected 64 lowercase hex digits (sha256), got {digest!r}")
    return f"sha256/{digest[:2]}/{digest}"


def _is_blob_name(directory: str, name: str) -> bool:
    return is_digest(name) and directory == name[:2]


@contextlib.contextmanager
def _reader(source: BlobSource) -> Iterator[BinaryIO]:
    if isinstance(source, bytes | bytearray | memoryview):
        yield io.BytesIO(source)
    elif isinstance(source, str | os.PathLike):
        with open(source, "rb") as stream:
            yield stream
    else:
        yield source


def _copy_hashing(source: BinaryIO, out: Any) -> str:
    sha = hashlib.sha256()
    while chunk := source.read(CHUNK_BYTES):
        sha.update(chunk)
        out.write(chunk)
    return sha.hexdigest()


class _Files(Protocol):
    root: str

    def put(self, stream: BinaryIO) -> str: ...
    def exists(self, name: str) -> bool: ...
    def digests(self) -> Iterator[str]: ...
    def size(self, name: str) -> int: ...
    def location(self, name: str) -> str: ...
    def open(self, name: str) -> contextlib.AbstractContextManager[BinaryIO]: ...
    def remove(self, name: str) -> None: ...


class _LocalFiles:
    """A directory on this machine: `os.replace` is atomic, fsync makes it durable."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self.root = str(root)

    def path(self, name: str) -> Path:
        return self._root / name

    def put(self, stream: BinaryIO) -> str:
        tmp_dir = self._root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, prefix="put-")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                digest = _copy_hashing(stream, out)
                out.flush()
                os.fsync(out.fileno())
            final = self.path(_name(digest))
            if final.is_file():
                tmp.unlink()
                return digest
            created = not final.parent.is_dir()
            final.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o444)  # read-only: a stray write to a blob fails instead of corrupting
            os.replace(tmp, final)
            _fsync_dir(final.parent)
            if created:
                _fsync_dir(final.parent.parent)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return digest

    def exists(self, name: str) -> bool:
        return self.path(name).is_file()

    def digests(self) -> Iterator[str]:
        for path in (self._root / "sha256").glob("*/*"):
            if _is_blob_name(path.parent.name, path.name) and path.is_file():
                yield path.name

    def size(self, name: str) -> int:
        try:
            return self.path(name).stat().st_size
        except FileNotFoundError:
            raise BlobNotFoundError(f"blob {Path(name).name} not in {self.root}") from None

    def location(self, name: str) -> str:
        return str(self.path(name))

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        try:
            stream = self.path(name).open("rb")
        except FileNotFoundError:
            raise BlobNotFoundError(f"blob {Path(name).name} not in {self.root}") from None
        with stream:
            yield stream

    def remove(self, name: str) -> None:
        self.path(name).unlink(missing_ok=True)


class _FsspecFiles:
    """Any fsspec filesystem (memory, S3, GCS...): written to `tmp/`, then moved into place."""

    def __init__(self, url: str) -> None:
        import fsspec  # type: ignore[import-untyped]  # deferred: only remote stores need it

        try:
            fs, path = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as exc:  # e.g. s3:// without s3fs installed
            raise StoreError(f"blob store {url}: {exc}") from exc
        self._fs: Any = fs
        self._path = str(path).rstrip("/")
        self.root = url

    def _key(self, name: str) -> str:
        return f"{self._path}/{name}"

    def put(self, stream: BinaryIO) -> str:
        self._fs.makedirs(self._key("tmp"), exist_ok=True)
        tmp = self._key(f"tmp/put-{uuid.uuid4().hex}")
        try:
            with self._fs.open(tmp, "wb") as out:
                digest = _copy_hashing(stream, out)
            final = self._key(_name(digest))
            if self._fs.exists(final):
                self._fs.rm(tmp)
                return digest
            self._fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
            self._fs.mv(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):  # cleaning up must not hide the first error
                self._fs.rm(tmp)
            raise
        return digest

    def exists(self, name: str) -> bool:
        return bool(self._fs.exists(self._key(name)))

    def digests(self) -> Iterator[str]:
        base = self._key("sha256")
        if not self._fs.exists(base):
            return
        for key in self._fs.find(base):
            _, directory, digest = str(key).rsplit("/", 2)
            if _is_blob_name(directory, digest):
                yield digest

    def size(self, name: str) -> int:
        try:
            return int(self._fs.size(self._key(name)))
        except FileNotFoundError:
            raise BlobNotFoundError(f"blob {name.rsplit('/', 1)[-1]} not in {self.root}") from None

    def location(self, name: str) -> str:
        return f"{self.root.rstrip('/')}/{name}"

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        try:
            stream = self._fs.open(self._key(name), "rb")
        except FileNotFoundError:
            raise BlobNotFoundError(f"blob {name.rsplit('/', 1)[-1]} not in {self.root}") from None
        with stream:
            yield stream

    def remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._fs.rm(self._key(name))


def _fsync_dir(directory: Path) -> None:
    # The rename is durable only once the directory entry is: fsync the directory itself.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
