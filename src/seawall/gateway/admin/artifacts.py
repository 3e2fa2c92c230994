"""Artifacts over HTTP: blobs uploaded into the artifact store, and a version's artifact from them.

A client registers a version in two steps: it uploads each file (and the signed manifest, if
any) with `PUT /admin/artifacts/{sha256}`, then names them by digest in
`POST /admin/models/{model}/versions`. The upload streams the body into the store through
sha256 and keeps it only if it hashes to the digest in the path, so a blob is always what its
name says. At registration `artifact_info` computes what the client could get wrong: the total
size from the blobs themselves, the store's root as the URI, and the signer from the manifest,
which must list exactly these files, for this model and version.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import Depends, FastAPI, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from seawall.errors import InvalidInputError, PayloadTooLargeError
from seawall.gateway.admin.access import Control, requires
from seawall.gateway.admin.errors import responses
from seawall.policies import ApiKey
from seawall.registry.records import ArtifactInfo
from seawall.store.blobs import BlobNotFoundError, BlobStore

if TYPE_CHECKING:  # SQLAlchemy, imported by the registry, only where a database is used
    from seawall.registry import Registry

__all__ = [
    "DIGEST_PATTERN",
    "MAX_BLOB_BYTES",
    "MAX_MANIFEST_BYTES",
    "MAX_VERSION",
    "ArtifactSpec",
    "BlobView",
    "artifact_info",
    "artifact_routes",
    "blob_store",
]

#: Largest blob one upload may carry (2 GiB): a bigger model is a directory of smaller files.
MAX_BLOB_BYTES = 2 * 1024**3
#: Largest signed manifest read at registration (it lists files, so 1 MiB is thousands).
MAX_MANIFEST_BYTES = 1 << 20
#: A sha256 as the artifact store names blobs.
DIGEST_PATTERN = r"^[0-9a-f]{64}$"
#: Most files one artifact may list.
MAX_FILES = 10_000
#: Highest version number (the registry's columns are 32-bit integers).
MAX_VERSION = 2**31 - 1

Deployer = Annotated[ApiKey, Depends(requires("deployer"))]
Digest = Annotated[str, Field(pattern=DIGEST_PATTERN, description="sha256, lower-case hex.")]
# No control characters: the path becomes a file name when a gateway rebuilds the artifact.
FilePath = Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^[^\x00-\x1f]+$")]

# The body is raw bytes, which FastAPI cannot describe from a parameter.
_BINARY_BODY = {
    "requestBody": {
        "required": True,
        "description": f"The blob's bytes, at most {MAX_BLOB_BYTES} (`MAX_BLOB_BYTES`).",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


class BlobView(BaseModel):
    """A blob in the artifact store."""

    model_config = ConfigDict(extra="forbid")

    sha256: str
    bytes: int
    """Its size."""


class ArtifactSpec(BaseModel):
    """A version's artifact: files already uploaded, named by path and digest."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["file", "directory"]
    """`file`: one file (its name is the one path); `directory`: any number of files."""
    files: dict[FilePath, Digest] = Field(min_length=1, max_length=MAX_FILES)
    """Relative POSIX path → sha256 of a blob uploaded with `PUT /admin/artifacts/{sha256}`."""
    manifest_digest: Digest | None = None
    """sha256 of the signed manifest envelope (uploaded too); it must list exactly these files
    for this model and version. Null: the version is unsigned."""


class _DigestMismatchError(Exception):
    def __init__(self, actual: str) -> None:
        super().__init__(actual)
        self.actual = actual


class _BodyReader:
    """The request body as a blocking binary stream, for `BlobStore.put` in a worker thread.

    Each read waits for the next chunk from the event loop. Past `limit` bytes it raises
    `PayloadTooLargeError`, and at the end, if the bytes do not hash to `expected`,
    `_DigestMismatchError`: either way before `put` has returned, so the store drops its
    temporary file and keeps nothing.
    """

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        loop: asyncio.AbstractEventLoop,
        expected: str,
        limit: int,
    ) -> None:
        self._chunks = chunks
        self._loop = loop
        self._expected = expected
        self._limit = limit
        self._sha = hashlib.sha256()
        self._pending = b""
        self._done = False
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        while not self._pending and not self._done:
            chunk = asyncio.run_coroutine_threadsafe(self._next(), self._loop).result()
            if chunk is None:
                self._done = True
                actual = self._sha.hexdigest()
                if not hmac.compare_digest(actual, self._expected):
                    raise _DigestMismatchError(actual)
            elif chunk:
                self.size += len(chunk)
                if self.size > self._limit:
                    raise PayloadTooLargeError(self._limit)
                self._sha.update(chunk)
                self._pending = chunk
        cut = len(self._pending) if size < 0 else size
        out, self._pending = self._pending[:cut], self._pending[cut:]
        return out

    async def _next(self) -> bytes | None:
        return await anext(self._chunks, None)


def artifact_routes(app: FastAPI) -> None:
    """`PUT /admin/artifacts/{sha256}`: upload one blob into the registry's artifact store."""

    @app.put(
        "/admin/artifacts/{sha256}",
        tags=["registry"],
        status_code=201,
        response_model=BlobView,
        responses={
            200: {"model": BlobView, "description": "The blob was in the store already."},
            **responses(413, 422, 503),
        },
        openapi_extra=_BINARY_BODY,
    )
    async def put_blob(
        sha256: Annotated[str, Path(pattern=DIGEST_PATTERN, description="The body's sha256.")],
        key: Deployer,
        control: Control,
        request: Request,
    ) -> JSONResponse:
        """Store the body as the blob `sha256` (201), or find it there already (200).

        Refused with 422, and nothing kept, unless the body hashes to `sha256`; with 413 past
        `MAX_BLOB_BYTES`. A new blob is audited (`artifact.put`).
        """
        # Refused before a byte is read if it says it is too big (ASCII digits only: int()
        # reads "²" too). What it does not say, the count of bytes read enforces.
        declared = request.headers.get("content-length", "")
        if (
            declared.isascii()
            and declared.isdigit()
            and (len(declared) > 12 or int(declared) > MAX_BLOB_BYTES)
        ):
            raise PayloadTooLargeError(MAX_BLOB_BYTES)
        blobs = blob_store(await control.registry())
        existed = await asyncio.to_thread(blobs.has, sha256)
        body = _BodyReader(request.stream(), asyncio.get_running_loop(), sha256, MAX_BLOB_BYTES)
        try:
            await asyncio.to_thread(blobs.put, body)  # type: ignore[arg-type]  # read() is enough
        except _DigestMismatchError as exc:
            raise HTTPException(
                422, f"sha256: the body ({body.size} bytes) hashes to {exc.actual}, not {sha256}"
            ) from None
        except ClientDisconnect:
            raise HTTPException(400, "body: the client went away before the end") from None
        if not existed:
            audit = await control.audit()
            await audit.append(key.name, "artifact.put", f"blob:{sha256}", {"bytes": body.size})
        view = BlobView(sha256=sha256, bytes=body.size)
        return JSONResponse(view.model_dump(), 200 if existed else 201)


def blob_store(registry: Registry) -> BlobStore:
    """The registry's artifact store (503 if it has none: never so in a gateway)."""
    if registry.blobs is None:
        raise HTTPException(503, "the registry has no artifact store (registry.artifact_store)")
    return registry.blobs


def artifact_info(
    blobs: BlobStore, name: str, version: int | None, spec: ArtifactSpec
) -> tuple[ArtifactInfo, int | None]:
    """The artifact to register, computed from the store, and the version number to take.

    A signed manifest names its version: with `version` None, that one is taken. Blocking
    (reads the store): call it off the event loop.
    """
    sizes = {
        path: _size(blobs, f"artifact.files: {path}", digest) for path, digest in spec.files.items()
    }
    signed_by = None
    if spec.manifest_digest is not None:
        signed_by, version = _check_manifest(blobs, name, version, spec, sizes)
    info = ArtifactInfo(
        kind=spec.kind,
        files=dict(spec.files),
        total_bytes=sum(sizes.values()),
        uri=blobs.root,
        manifest_digest=spec.manifest_digest,
        signed_by=signed_by,
    )
    return info, version


def _size(blobs: BlobStore, field: str, digest: str) -> int:
    try:
        return blobs.size(digest)
    except BlobNotFoundError:
        raise InvalidInputError(
            field,
            f"blob {digest} is not in the artifact store (PUT /admin/artifacts/{digest})",
        ) from None


def _check_manifest(
    blobs: BlobStore, name: str, version: int | None, spec: ArtifactSpec, sizes: dict[str, int]
) -> tuple[str, int]:
    """The signer's key id and the version, if the manifest lists exactly this artifact."""
    from seawall.security.manifest import Manifest

    assert spec.manifest_digest is not None
    field = "artifact.manifest_digest"
    size = _size(blobs, field, spec.manifest_digest)
    if size > MAX_MANIFEST_BYTES:
        raise InvalidInputError(field, f"{size} bytes; a manifest is at most {MAX_MANIFEST_BYTES}")
    with blobs.open(spec.manifest_digest) as stream:
        envelope = stream.read(MAX_MANIFEST_BYTES + 1)
    try:
        manifest = Manifest.from_json(json.loads(envelope)["manifest"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(field, f"not a seawall manifest envelope: {exc}") from None
    if version is None:
        signed = manifest.version
        if not (signed.isascii() and signed.isdigit() and len(signed) <= 10) or not (
            1 <= int(signed) <= MAX_VERSION
        ):
            raise InvalidInputError(
                "version", f"the manifest's version {signed!r} is not a version number"
            )
        version = int(signed)
    if (manifest.name, manifest.version) != (name, str(version)):
        raise InvalidInputError(
            field,
            f"signed for {manifest.name!r} version {manifest.version!r}, not {name!r} version "
            f"{version} (sign again, or register with that version)",
        )
    listed = {f.path: (f.size, f.sha256) for f in manifest.files}
    ours = {path: (sizes[path], digest) for path, digest in spec.files.items()}
    if manifest.kind != spec.kind or listed != ours:
        raise InvalidInputError(field, "does not list exactly the artifact's files and digests")
    return manifest.key_id, version
