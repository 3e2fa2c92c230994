"""`ApiKeyStore`: API keys issued at run time and kept in the database, hashed.

A key's secret is `sw_` and 32 random bytes (URL-safe base64), returned once by `create` or
`rotate` and never stored: the `api_keys` table (migration 0003) holds its sha256 in hex and
its first 8 characters (`prefix`, to tell keys apart in a listing). `lookup` hashes what was
presented, finds the row by that hash and compares the two with `hmac.compare_digest`, hit or
miss, so neither step depends on how much of a guess was right.

A key works until `revoked_at` or `expires_at`, whichever comes first. `revoke` sets
`revoked_at` to now on every working key of that name; `rotate` issues a successor with the same
roles, scopes and expiry and sets the old key's `revoked_at` to now plus an optional overlap,
so clients can switch over without a failed call. Names are unique among keys not revoked yet.

Every create, revoke and rotate appends an audit record (`key.create`, `key.revoke`,
`key.rotate`) in the same transaction as the change: both are committed, or neither. Records
name the key and its prefix, never the secret or its hash.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Connection,
    Index,
    Integer,
    String,
    Text,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from seawall.clock import Clock, SystemClock
from seawall.store.audit import AuditLog
from seawall.store.engine import Database
from seawall.store.schema import Base, UtcDateTime

__all__ = [
    "KEY_PREFIX",
    "MAX_OVERLAP_S",
    "PREFIX_CHARS",
    "ROLES",
    "ApiKeyRecord",
    "ApiKeyRow",
    "ApiKeyStore",
    "KeyNameInUseError",
    "UnknownKeyError",
    "generate_secret",
    "hash_secret",
]

#: What every generated secret starts with, so a leaked one is easy to recognise and scan for.
KEY_PREFIX = "sw_"
#: Characters of the secret kept for display (the `sw_` and 5 random ones: 30 bits).
PREFIX_CHARS = 8
#: Longest overlap of a rotation, a year: an old secret should not outlive its successor longer
#: (and a much longer one is past the last date there is).
MAX_OVERLAP_S = 365 * 86_400.0
#: Roles a key may hold (as `auth.keys[].roles` in config; a test keeps the two equal).
ROLES = frozenset({"admin", "consumer", "viewer", "deployer", "approver", "data-steward"})

# Random bytes in a secret: 256 bits.
_SECRET_BYTES = 32
# Compared against on a miss, so a miss does the same work as a hit (no secret hashes to this).
_NO_MATCH = "0" * 64
_MAX_NAME_CHARS = 200

# Names for list types: inside `ApiKeyStore`, its method `list` shadows the builtin.
_Records = list["ApiKeyRecord"]
_Names = list[str]


class KeyNameInUseError(ValueError):
    """A key of that name is active already (revoke or rotate it instead)."""


class UnknownKeyError(ValueError):
    """No active key has that name."""


def generate_secret() -> str:
    """A new random secret: `sw_` and 32 random bytes, URL-safe base64."""
    return KEY_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)


def hash_secret(secret: str) -> str:
    """The sha256 of a secret in lower-case hex (as `seawall.policies.auth.hash_key`)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


class ApiKeyRow(Base):
    """A row of `api_keys` (created by migration 0003); the secret is never stored."""

    __tablename__ = "api_keys"
    __table_args__ = (
        Index("ix_api_keys_key_hash", "key_hash", unique=True),
        Index(
            "ix_api_keys_active_name",
            "name",
            unique=True,
            sqlite_where=text("revoked_at IS NULL"),
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(Text)
    prefix: Mapped[str] = mapped_column(String(PREFIX_CHARS))
    key_hash: Mapped[str] = mapped_column(String(64))
    roles: Mapped[list[str]] = mapped_column(JSON)
    # SQL NULL, not JSON null, for "every model": `IS NULL` must find it.
    models: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_by: Mapped[str] = mapped_column(Text)


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """One issued key as stored: everything but the secret and its hash."""

    id: int
    name: str
    prefix: str
    roles: tuple[str, ...]
    #: Model name patterns the key may call (None: every model).
    models: tuple[str, ...] | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    created_by: str

    def active(self, now: datetime) -> bool:
        """True if the key works at `now`: neither revoked nor expired yet."""
        return not (
            (self.revoked_at is not None and now >= self.revoked_at)
            or (self.expires_at is not None and now >= self.expires_at)
        )


class ApiKeyStore:
    """API keys in `database`; every method is async and runs on the database's threads."""

    def __init__(
        self, database: Database, *, clock: Clock | None = None, audit: AuditLog | None = None
    ) -> None:
        self.database = database
        self._clock = clock or SystemClock()
        self._audit = audit or AuditLog(database, clock=self._clock)

    async def create(
        self,
        name: str,
        roles: Iterable[str],
        models: Iterable[str] | None = None,
        expires_at: datetime | None = None,
        *,
        actor: str,
    ) -> tuple[ApiKeyRecord, str]:
        """Issue a key; the record and the secret, which is shown this once and not kept.

        Bad input (a name in use, an unknown role, an empty scope, a past or naive expiry) is
        a ValueError naming the field, and writes nothing.
        """
        _check_name(name)
        role_list = _checked_roles(roles)
        model_list = _checked_models(models)
        if expires_at is not None and expires_at.tzinfo is None:
            raise ValueError(f"expires_at: needs a time zone, got {expires_at.isoformat()}")
        if expires_at is not None and expires_at <= self._now():
            raise ValueError(f"expires_at: must be in the future, got {expires_at.isoformat()}")
        return await self.database.run(self._create, name, role_list, model_list, expires_at, actor)

    async def list(self, *, include_revoked: bool = False) -> _Records:
        """Every key not revoked yet (or every key ever issued), by name then age."""
        return await self.database.run(self._list, include_revoked)

    async def revoke(self, name: str, *, actor: str) -> _Records:
        """Stop every working key named `name` now; the keys revoked (ValueError if none)."""
        return await self.database.run(self._revoke, name, actor)

    async def rotate(
        self, name: str, *, actor: str, overlap_s: float = 0.0
    ) -> tuple[ApiKeyRecord, str]:
        """Replace the key `name` with a new secret (same roles, scopes and expiry).

        The old key stops working at once, or after `overlap_s` seconds. Returns the new
        record and its secret, shown this once.
        """
        if not (math.isfinite(overlap_s) and 0 <= overlap_s <= MAX_OVERLAP_S):
            raise ValueError(f"overlap_s: seconds from 0 to {MAX_OVERLAP_S:.0f}, got {overlap_s}")
        return await self.database.run(self._rotate, name, actor, overlap_s)

    async def lookup(self, secret: str) -> ApiKeyRecord | None:
        """The key whose secret this is, if it works now; None if unknown, revoked or expired."""
        return await self.database.run(self._lookup, secret)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.time(), UTC)

    def _create(
        self,
        name: str,
        roles: _Names,
        models: _Names | None,
        expires_at: datetime | None,
        actor: str,
    ) -> tuple[ApiKeyRecord, str]:
        with self.database.begin() as connection:
            if connection.execute(_ACTIVE.where(ApiKeyRow.name == name)).first() is not None:
                message = f"name: a key named {name!r} exists (revoke or rotate it)"
                raise KeyNameInUseError(message)
            record, secret = self._insert(connection, name, roles, models, expires_at, actor)
            self._audit.append_in(connection, actor, "key.create", name, _details(record))
        return record, secret

    def _insert(
        self,
        connection: Connection,
        name: str,
        roles: _Names,
        models: _Names | None,
        expires_at: datetime | None,
        actor: str,
    ) -> tuple[ApiKeyRecord, str]:
        secret = generate_secret()
        values: dict[str, Any] = {
            "name": name,
            "prefix": secret[:PREFIX_CHARS],
            "key_hash": hash_secret(secret),
            "roles": roles,
            "models": models,
            "created_at": self._now(),
            "expires_at": expires_at,
            "revoked_at": None,
            "created_by": actor,
        }
        try:
            row = connection.execute(insert(ApiKeyRow).returning(*_COLUMNS), values).one()
        except IntegrityError as exc:
            # Another writer took the name between the check and the insert (PostgreSQL).
            message = f"name: a key named {name!r} exists (revoke or rotate it)"
            raise KeyNameInUseError(message) from exc
        return _record(row), secret

    def _list(self, include_revoked: bool) -> _Records:
        query = select(*_COLUMNS).order_by(ApiKeyRow.name, ApiKeyRow.id)
        if not include_revoked:
            query = query.where(
                or_(ApiKeyRow.revoked_at.is_(None), ApiKeyRow.revoked_at > self._now())
            )
        with self.database.begin(read_only=True) as connection:
            return [_record(row) for row in connection.execute(query)]

    def _revoke(self, name: str, actor: str) -> _Records:
        now = self._now()
        working = or_(ApiKeyRow.revoked_at.is_(None), ApiKeyRow.revoked_at > now)
        with self.database.begin() as connection:
            rows = connection.execute(
                update(ApiKeyRow)
                .where(ApiKeyRow.name == name, working)
                .values(revoked_at=now)
                .returning(*_COLUMNS)
            ).all()
            if not rows:
                raise UnknownKeyError(f"name: no key named {name!r} is active")
            revoked = sorted((_record(row) for row in rows), key=lambda r: r.id)
            details = {"name": name, "prefixes": [r.prefix for r in revoked]}
            self._audit.append_in(connection, actor, "key.revoke", name, details)
        return revoked

    def _rotate(self, name: str, actor: str, overlap_s: float) -> tuple[ApiKeyRecord, str]:
        with self.database.begin() as connection:
            row = connection.execute(_ACTIVE.where(ApiKeyRow.name == name)).first()
            if row is None:
                raise UnknownKeyError(f"name: no key named {name!r} is active")
            old = _record(row)
            until = self._now() + timedelta(seconds=overlap_s)
            connection.execute(
                update(ApiKeyRow).where(ApiKeyRow.id == old.id).values(revoked_at=until)
            )
            models = None if old.models is None else list(old.models)
            record, secret = self._insert(
                connection, name, list(old.roles), models, old.expires_at, actor
            )
            details = {**_details(record), "old_prefix": old.prefix, "overlap_s": overlap_s}
            self._audit.append_in(connection, actor, "key.rotate", name, details)
        return record, secret

    def _lookup(self, secret: str) -> ApiKeyRecord | None:
        presented = hash_secret(secret)
        query = select(*_COLUMNS, ApiKeyRow.key_hash).where(ApiKeyRow.key_hash == presented)
        with self.database.begin(read_only=True) as connection:
            row = connection.execute(query).first()
        # Compare on a miss too, so a hit and a miss do the same work.
        expected = row.key_hash if row is not None else _NO_MATCH
        if not hmac.compare_digest(presented, expected) or row is None:
            return None
        record = _record(row)
        return record if record.active(self._now()) else None


_COLUMNS = (
    ApiKeyRow.id,
    ApiKeyRow.name,
    ApiKeyRow.prefix,
    ApiKeyRow.roles,
    ApiKeyRow.models,
    ApiKeyRow.created_at,
    ApiKeyRow.expires_at,
    ApiKeyRow.revoked_at,
    ApiKeyRow.created_by,
)
# The key of `name` not revoked yet (at most one, by the partial unique index).
_ACTIVE = select(*_COLUMNS).where(ApiKeyRow.revoked_at.is_(None))


def _record(row: Any) -> ApiKeyRecord:
    models = None if row.models is None else tuple(row.models)
    return ApiKeyRecord(
        row.id,
        row.name,
        row.prefix,
        tuple(row.roles),
        models,
        row.created_at,
        row.expires_at,
        row.revoked_at,
        row.created_by,
    )


def _details(record: ApiKeyRecord) -> dict[str, Any]:
    """What an audit record says about a key: never its secret or hash."""
    return {
        "name": record.name,
        "prefix": record.prefix,
        "roles": list(record.roles),
        "models": None if record.models is None else list(record.models),
        "expires_at": None if record.expires_at is None else record.expires_at.isoformat(),
    }


def _check_name(name: str) -> None:
    if not name or not name.isprintable() or name.strip() != name:
        raise ValueError(f"name: printable with no outer spaces, got {name!r}")
    if len(name) > _MAX_NAME_CHARS:
        raise ValueError(f"name: at most {_MAX_NAME_CHARS} characters, got {len(name)}")


def _checked_roles(roles: Iterable[str]) -> list[str]:
    chosen = sorted(set(roles))
    if not chosen:
        raise ValueError("roles: at least one role")
    unknown = [role for role in chosen if role not in ROLES]
    if unknown:
        raise ValueError(f"roles: unknown {unknown}; known: {', '.join(sorted(ROLES))}")
    return chosen


def _checked_models(models: Iterable[str] | None) -> list[str] | None:
    if models is None:
        return None
    chosen = sorted(set(models))
    if not chosen or not all(isinstance(m, str) and m and m.isprintable() for m in chosen):
        raise ValueError(f"models: non-empty name patterns (None: every model), got {chosen}")
    return chosen
