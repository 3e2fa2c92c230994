"""API keys in the gateway's database: listed, issued, revoked and rotated by admins.

The same keys as `seawall keys` (`seawall.security.apikeys.ApiKeyStore`): a secret is returned
once, by create or rotate, and never stored. Every change is audited, in the same transaction,
with the caller's key name as actor. Admin only, and only with a key for every model: a key limited
to some models could otherwise issue one that is not. Without a database, 503.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, FastAPI, Path, Query
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException

from seawall.errors import ConflictError, NotFoundError
from seawall.gateway.admin.access import Control, Role, requires
from seawall.gateway.admin.errors import responses
from seawall.policies import ApiKey

if TYPE_CHECKING:
    from seawall.security.apikeys import ApiKeyRecord

__all__ = ["IssuedKey", "KeyCreate", "KeyRotation", "KeyView", "key_routes"]

Admin = Annotated[ApiKey, Depends(requires("admin", every_model=True))]
KeyName = Annotated[str, Path(min_length=1, max_length=200, description="The key's name.")]

#: Longest overlap of a rotation: a year (`apikeys.MAX_OVERLAP_S`; a test keeps them equal).
MAX_OVERLAP_S = 365 * 86_400.0
# The secret is in the body: no cache along the way may keep it.
_NO_STORE = {"cache-control": "no-store"}


class KeyView(BaseModel):
    """An issued API key, without its secret."""

    model_config = ConfigDict(extra="forbid")

    name: str
    prefix: str
    """The secret's first 8 characters, to tell keys apart."""
    roles: list[str]
    models: list[str] | None
    """Model name patterns the key may call; null for every model."""
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    """When it stopped (or, after a rotation with an overlap, stops) working."""
    created_by: str
    """Who issued it: an API key's name, or `cli:<user>`."""


class IssuedKey(KeyView):
    """A key just issued, with its secret: shown this once, never stored."""

    secret: str


class KeyCreate(BaseModel):
    """A key to issue."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=r"^[^/\s](?:[^/]*[^/\s])?$")
    """Unique among working keys; printable, no outer spaces, no `/` (a path segment here)."""
    roles: list[Role] = Field(min_length=1)
    models: list[Annotated[str, Field(min_length=1)]] | None = Field(None, min_length=1)
    """Model name patterns (`iris`, `iris:2`, `llm-*`); null or absent for every model."""
    expires_at: AwareDatetime | None = None
    """When it stops working, with a time zone; null for never."""

    @field_validator("expires_at", mode="before")
    @classmethod
    def _text(cls, value: object) -> object:
        # Not a number of seconds, which pydantic would take: the schema says a date-time.
        if value is not None and not isinstance(value, str | datetime):
            raise ValueError("a date-time with a time zone, as 2027-01-01T00:00:00Z")
        return value

    @field_validator("expires_at")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        try:  # stored in UTC: 9999-12-31T23:00:00-05:00 is past the last year there is
            return None if value is None else value.astimezone(UTC)
        except OverflowError:
            raise ValueError("must be within years 1 to 9999 in UTC") from None


class KeyRotation(BaseModel):
    """How to rotate a key."""

    model_config = ConfigDict(extra="forbid")

    overlap_s: float = Field(0.0, ge=0, le=MAX_OVERLAP_S, strict=True)  # not `false` for 0
    """Seconds the old secret keeps working, so clients can switch without a failed call."""


def key_routes(app: FastAPI) -> None:
    """`/admin/keys...` over the gateway database's keys."""

    @app.get(
        "/admin/keys", tags=["keys"], response_model=list[KeyView], responses=responses(422, 503)
    )
    async def list_keys(
        key: Admin,
        control: Control,
        include_revoked: Annotated[bool, Query(description="Revoked keys too.")] = False,
    ) -> list[KeyView]:
        """The keys in the database (never a secret), by name then age."""
        store = await control.keys()
        return [_view(r) for r in await store.list(include_revoked=include_revoked)]

    @app.post(
        "/admin/keys",
        tags=["keys"],
        status_code=201,
        response_model=IssuedKey,
        responses=responses(409, 422, 503),
    )
    async def create_key(body: KeyCreate, key: Admin, control: Control) -> JSONResponse:
        """Issue a key; the response holds its secret, shown this once."""
        store = await control.keys()
        with _translated():
            record, secret = await store.create(
                body.name, body.roles, body.models, body.expires_at, actor=key.name
            )
        return _issued(record, secret, 201)

    @app.delete(
        "/admin/keys/{name}",
        tags=["keys"],
        response_model=list[KeyView],
        responses=responses(404, 422, 503),
    )
    async def revoke_key(name: KeyName, key: Admin, control: Control) -> list[KeyView]:
        """Stop the key `name` now; the keys revoked."""
        store = await control.keys()
        with _translated():
            return [_view(r) for r in await store.revoke(_known(name), actor=key.name)]

    @app.post(
        "/admin/keys/{name}/rotate",
        tags=["keys"],
        response_model=IssuedKey,
        responses=responses(404, 422, 503),
    )
    async def rotate_key(
        name: KeyName, key: Admin, control: Control, body: KeyRotation | None = None
    ) -> JSONResponse:
        """Give the key `name` a new secret (same roles, scopes, expiry), shown this once."""
        store = await control.keys()
        overlap_s = 0.0 if body is None else body.overlap_s
        with _translated():
            record, secret = await store.rotate(_known(name), actor=key.name, overlap_s=overlap_s)
        return _issued(record, secret, 200)


@contextmanager
def _translated() -> Iterator[None]:
    """The store's ValueErrors as refusals: 409 for a name in use, 404 for none, else 422."""
    from seawall.security.apikeys import KeyNameInUseError, UnknownKeyError

    try:
        yield
    except KeyNameInUseError as exc:
        raise ConflictError(str(exc)) from exc
    except UnknownKeyError as exc:
        raise NotFoundError(str(exc)) from exc
    except ValueError as exc:  # a field the store refuses: `<field>: <reason>`
        raise HTTPException(422, str(exc)) from exc


def _known(name: str) -> str:
    """`name`, if a key could have it: none has an unprintable name, and PostgreSQL would refuse
    to even look for one holding a NUL."""
    if not name.isprintable():
        raise NotFoundError(f"name: no key named {name!r} is active")
    return name


def _view(record: ApiKeyRecord) -> KeyView:
    return KeyView(
        name=record.name,
        prefix=record.prefix,
        roles=list(record.roles),
        models=None if record.models is None else list(record.models),
        created_at=record.created_at,
        expires_at=record.expires_at,
        revoked_at=record.revoked_at,
        created_by=record.created_by,
    )


def _issued(record: ApiKeyRecord, secret: str, status: int) -> JSONResponse:
    issued = IssuedKey(**_view(record).model_dump(), secret=secret)
    return JSONResponse(issued.model_dump(mode="json"), status, headers=_NO_STORE)
