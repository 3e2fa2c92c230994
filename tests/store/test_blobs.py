"""`BlobStore` on a local directory and on fsspec's `memory://`: addressing, atomicity, checks."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest

from seawall.store import BlobCorruptError, BlobNotFoundError, BlobStore, StoreError
from seawall.store.blobs import CHUNK_BYTES, is_digest

PAYLOAD = b"the quick brown fox jumps over the lazy dog\n" * 1000


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def memory_url() -> Iterator[str]:
    """A fresh prefix of fsspec's process-wide memory filesystem, emptied afterwards."""
    prefix = f"/blobs-{uuid.uuid4().hex}"
    yield f"memory://{prefix}"
    fs = fsspec.filesystem("memory")
    if fs.exists(prefix):
        fs.rm(prefix, recursive=True)


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return BlobStore(tmp_path / "blobs")
    url: str = request.getfixturevalue("memory_url")
    return BlobStore(url, cache_dir=tmp_path / "cache")


def blob_names(store: BlobStore) -> list[str]:
    """Every file under `sha256/` and `tmp/`, relative to the root."""
    if store.is_local:
        root = Path(store.root)
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    fs, path = fsspec.core.url_to_fs(store.root)
    if not fs.exists(path):
        return []
    return sorted(str(f)[len(path) + 1 :] for f in fs.find(path))


def overwrite(store: BlobStore, digest: str, data: bytes) -> None:
    """Corrupt a stored blob behind the store's back."""
    location = store.uri(digest)
    if store.is_local:
        os.chmod(location, 0o644)
        Path(location).write_bytes(data)
    else:
        fs, path = fsspec.core.url_to_fs(location)
        fs.pipe_file(path, data)


class FailingStream(io.RawIOBase):
    """Yields `good` bytes in small reads, then raises: a source that breaks mid-copy."""

    def __init__(self, good: bytes) -> None:
        self._left = good

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if not self._left:
            raise OSError("disk read error")
        chunk, self._left = self._left[:4096], self._left[4096:]
        return chunk


def test_put_names_a_blob_by_its_sha256_and_reads_it_back(store: BlobStore) -> None:
    digest = store.put(PAYLOAD)

    assert digest == sha(PAYLOAD)
    assert store.has(digest)
    assert store.size(digest) == len(PAYLOAD)
    with store.open(digest) as stream:
        assert stream.read() == PAYLOAD
    assert blob_names(store) == [f"sha256/{digest[:2]}/{digest}"]
    assert store.uri(digest).endswith(f"sha256/{digest[:2]}/{digest}")


def test_put_takes_bytes_a_path_or_a_stream(store: BlobStore, tmp_path: Path) -> None:
    source = tmp_path / "model.bin"
    source.write_bytes(PAYLOAD)

    assert store.put(bytearray(PAYLOAD)) == sha(PAYLOAD)
    assert store.put(source) == sha(PAYLOAD)
    assert store.put(str(source)) == sha(PAYLOAD)
    with source.open("rb") as stream:
        assert store.put(stream) == sha(PAYLOAD)
    assert store.put(b"") == sha(b"")


def test_content_larger_than_a_chunk_is_streamed_whole(store: BlobStore) -> None:
    data = os.urandom(CHUNK_BYTES * 2 + 12345)

    digest = store.put(io.BytesIO(data))

    assert digest == sha(data)
    assert store.size(digest) == len(data)
    assert store.verify(digest)


def test_putting_the_same_content_again_is_a_no_op(store: BlobStore) -> None:
    first = store.put(PAYLOAD)
    second = store.put(PAYLOAD)
    other = store.put(b"other")

    assert first == second
    assert blob_names(store) == sorted(
        [f"sha256/{first[:2]}/{first}", f"sha256/{other[:2]}/{other}"]
    )


def test_concurrent_puts_of_one_content_leave_one_blob(store: BlobStore) -> None:
    digests: list[str] = []

    def put() -> None:
        digests.append(store.put(PAYLOAD))

    threads = [threading.Thread(target=put) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert digests == [sha(PAYLOAD)] * 8
    assert blob_names(store) == [f"sha256/{digests[0][:2]}/{digests[0]}"]
    assert store.verify(digests[0])


def test_a_source_failing_mid_copy_leaves_no_blob_and_no_temporary(store: BlobStore) -> None:
    with pytest.raises(OSError, match="disk read error"):
        store.put(FailingStream(PAYLOAD))

    assert blob_names(store) == []
    assert not store.has(sha(PAYLOAD))


def test_a_failed_rename_leaves_no_blob_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = BlobStore(tmp_path / "blobs")

    def no_space(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(OSError, match="No space left"):
        store.put(PAYLOAD)

    assert blob_names(store) == []


def test_a_local_put_fsyncs_the_file_and_its_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        mode = os.fstat(fd).st_mode
        synced.append("dir" if stat.S_ISDIR(mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    store = BlobStore(tmp_path / "blobs")

    store.put(PAYLOAD)
    assert synced == ["file", "dir", "dir"]  # the blob, its new <ab>/ directory, sha256/

    synced.clear()
    store.put(PAYLOAD + b"!")  # lands in another <ab>/ directory, or the same one
    assert synced[:2] == ["file", "dir"]


def test_local_blobs_are_read_only(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    digest = store.put(PAYLOAD)

    assert stat.S_IMODE(os.stat(store.uri(digest)).st_mode) == 0o444


def test_verify_detects_a_corrupted_blob(store: BlobStore) -> None:
    digest = store.put(PAYLOAD)
    assert store.verify(digest)

    corrupted = bytearray(PAYLOAD)
    corrupted[len(corrupted) // 2] ^= 0x01
    overwrite(store, digest, bytes(corrupted))

    assert not store.verify(digest)


def test_a_missing_blob_is_reported_as_not_found(store: BlobStore) -> None:
    digest = sha(b"never stored")

    assert not store.has(digest)
    with pytest.raises(BlobNotFoundError, match=digest), store.open(digest):
        pass
    with pytest.raises(BlobNotFoundError):
        store.size(digest)
    with pytest.raises(BlobNotFoundError):
        store.verify(digest)
    with pytest.raises(BlobNotFoundError):
        store.get(digest)


@pytest.mark.parametrize(
    "digest",
    ["", "../../etc/passwd", "A" * 64, "a" * 63, "a" * 65, "a" * 64 + "\n", "g" * 64],
)
def test_anything_but_a_sha256_digest_is_refused(store: BlobStore, digest: str) -> None:
    assert not is_digest(digest)
    with pytest.raises(ValueError, match="digest: expected 64 lowercase hex digits"):
        store.has(digest)


def test_get_gives_the_local_blob_itself(tmp_path: Path) -> None:
    store = BlobStore(f"file://{tmp_path / 'blobs'}")
    digest = store.put(PAYLOAD)

    path = store.get(digest)

    assert path == tmp_path / "blobs" / "sha256" / digest[:2] / digest
    assert path.read_bytes() == PAYLOAD


def test_get_copies_a_remote_blob_into_the_cache(memory_url: str, tmp_path: Path) -> None:
    store = BlobStore(memory_url, cache_dir=tmp_path / "cache")
    digest = store.put(PAYLOAD)

    path = store.get(digest)

    assert path.read_bytes() == PAYLOAD
    assert path.is_relative_to(tmp_path / "cache")
    assert store.get(digest) == path  # a second get reads the cache


def test_get_refuses_a_remote_blob_that_does_not_match_its_name(
    memory_url: str, tmp_path: Path
) -> None:
    store = BlobStore(memory_url, cache_dir=tmp_path / "cache")
    digest = store.put(PAYLOAD)
    overwrite(store, digest, b"tampered")

    with pytest.raises(BlobCorruptError, match=digest):
        store.get(digest)
    cache = BlobStore(tmp_path / "cache")
    assert not cache.has(digest)
    assert not cache.has(sha(b"tampered"))


def test_get_from_a_remote_store_needs_a_cache_dir(memory_url: str) -> None:
    store = BlobStore(memory_url)
    digest = store.put(PAYLOAD)

    with pytest.raises(StoreError, match="cache_dir"):
        store.get(digest)


def test_discard_removes_a_blob(store: BlobStore) -> None:
    digest = store.put(PAYLOAD)

    store.discard(digest)
    store.discard(digest)  # already gone: nothing to do

    assert not store.has(digest)


def test_an_unknown_url_scheme_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="nosuchfs://bucket"):
        BlobStore("nosuchfs://bucket/prefix")


def test_digests_lists_every_blob_sorted_and_nothing_else(store: BlobStore) -> None:
    assert store.digests() == []
    contents = [PAYLOAD, b"", b"another blob", os.urandom(CHUNK_BYTES + 1)]
    stored = [store.put(content) for content in contents]
    # Not blobs: a write in progress, a misplaced and a misnamed file.
    stray = {"tmp/put-123": b"partial", f"sha256/00/{sha(b'x')}": b"x", "sha256/ab/notes": b"x"}
    for name, data in stray.items():
        if store.is_local:
            path = Path(store.root) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        else:
            fs, root = fsspec.core.url_to_fs(store.root)
            fs.pipe_file(f"{root}/{name}", data)

    assert store.digests() == sorted(stored)
    assert len(set(stored)) == 4
