"""Authentication and authorization by API key; keys come from config, stored only as SHA-256.

The presented secret (`ctx.credentials`, which the gateway takes from `Authorization: Bearer` or
`x-api-key`) is hashed and looked up by its hash, then compared with `hmac.compare_digest`, hit or
miss, so neither the lookup nor the comparison depends on how much of a guess was right.
No credentials, an unknown key or an expired one is 401; a known key without the required role
or outside its model scopes is 403. The secret and its hash never appear in a message, an event
or a `repr`.

Keys issued at run time (kept in a database) come in through an optional `lookup`: an async
function from a presented secret to its key, consulted when no configured key matches. Wrap it in
`CachedKeyLookup` so a busy gateway asks the database about a secret at most once per TTL
(5 s by default): a revocation takes effect within that time. Only the async path (`__call__`,
`verify`) consults it; `check` knows the configured keys alone.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Generic, TypeVar

from seawall.clock import Clock, SystemClock
from seawall.context import CallContext
from seawall.errors import ForbiddenError, RejectedError, UnauthorizedError
from seawall.pipeline import EventSink, Handler, discard

__all__ = [
    "ADMIN_ROLE",
    "ApiKey",
    "AuthFailed",
    "AuthOptions",
    "AuthPolicy",
    "CachedKeyLookup",
    "KeyLookup",
    "hash_key",
]

#: The role that implies every other role.
ADMIN_ROLE = "admin"
#: Roles of a key when none are given.
DEFAULT_ROLES = frozenset({"consumer"})
#: The role a key needs to call the policy's target (inference).
DEFAULT_REQUIRED_ROLE = "consumer"

#: Seconds a `CachedKeyLookup` answer is reused: how late a revocation may take effect.
DEFAULT_KEY_CACHE_TTL_S = 5.0
#: Secrets a `CachedKeyLookup` remembers at once (misses too), oldest dropped first.
DEFAULT_KEY_CACHE_ENTRIES = 10_000

_SHA256_HEX_LEN = 64
_HEX = frozenset("0123456789abcdef")
# Compared against on a miss, so a miss takes the same path as a hit (no key hashes to this).
_NO_MATCH = "0" * _SHA256_HEX_LEN


def hash_key(secret: str) -> str:
    """The SHA-256 of an API key's secret, in lower-case hex: what config stores."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A known API key: its name, the SHA-256 of its secret, roles and optional model scopes.

    `models` are patterns matched against the policy's target (`iris` also covers `iris:2`;
    `*` and `?` are wildcards); None allows every model. `expires_at` is wall-clock seconds
    since the epoch (on `Clock.time()`), or None for never.
    """

    name: str
    sha256: str = field(repr=False)
    roles: frozenset[str] = DEFAULT_ROLES
    models: frozenset[str] | None = None
    expires_at: float | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.name.isprintable() or self.name.strip() != self.name:
            raise ValueError(f"name: must be printable with no outer spaces, got {self.name!r}")
        digest = self.sha256.lower()
        if len(digest) != _SHA256_HEX_LEN or not set(digest) <= _HEX:
            # Not echoed: a plaintext key pasted here by mistake must not reach a log.
            raise ValueError(f"sha256: key {self.name!r} needs 64 hex digits (a SHA-256)")
        object.__setattr__(self, "sha256", digest)
        object.__setattr__(self, "roles", frozenset(self.roles))
        if not self.roles or not all(isinstance(r, str) and r for r in self.roles):
            raise ValueError(f"roles: key {self.name!r} needs at least one non-empty role")
        if self.models is not None:
            object.__setattr__(self, "models", frozenset(self.models))
            if not self.models:
                raise ValueError(f"models: key {self.name!r} has an empty scope (None: all)")
        if self.expires_at is not None and not math.isfinite(self.expires_at):
            raise ValueError(f"expires_at: must be a finite time, got {self.expires_at}")

    @classmethod
    def from_plaintext(
        cls,
        name: str,
        secret: str,
        *,
        roles: Iterable[str] = DEFAULT_ROLES,
        models: Iterable[str] | None = None,
        expires_at: float | None = None,
    ) -> ApiKey:
        """A key from its secret, which is hashed and not kept."""
        if not secret:
            raise ValueError(f"secret: key {name!r} has an empty secret")
        scope = None if models is None else frozenset(models)
        return cls(name, hash_key(secret), frozenset(roles), scope, expires_at)

    def has_role(self, role: str) -> bool:
        """True if the key has `role`, or is an admin."""
        return role in self.roles or ADMIN_ROLE in self.roles

    def may_call(self, target: str) -> bool:
        """True if `target` is within the key's model scopes (given scopes bind admins too)."""
        if self.models is None:
            return True
        return bool(target) and any(
            fnmatchcase(target, scope) or target.startswith(f"{scope}:") for scope in self.models
        )

    def expired(self, now: float) -> bool:
        """True if the key has expired at wall-clock time `now`."""
        return self.expires_at is not None and now >= self.expires_at


#: Finds the key a presented secret belongs to (expired or not), or None: e.g. a database lookup.
KeyLookup = Callable[[str], Awaitable[ApiKey | None]]


class CachedKeyLookup:
    """A `KeyLookup` that reuses each answer, hit or miss, for `ttl_s` seconds.

    Entries are keyed by the secret's SHA-256, so the cache never holds a secret. Misses are
    cached too, so a flood of made-up keys costs one lookup per distinct key per TTL, and a
    newly issued key may take up to `ttl_s` to be recognised.
    """

    def __init__(
        self,
        lookup: KeyLookup,
        *,
        clock: Clock | None = None,
        ttl_s: float = DEFAULT_KEY_CACHE_TTL_S,
        max_entries: int = DEFAULT_KEY_CACHE_ENTRIES,
    ) -> None:
        if not (math.isfinite(ttl_s) and ttl_s >= 0):
            raise ValueError(f"ttl_s: seconds >= 0, got {ttl_s}")
        if max_entries < 1:
            raise ValueError(f"max_entries: at least 1, got {max_entries}")
        self._lookup = lookup
        self._clock = clock or SystemClock()
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        # digest -> (key or None, monotonic time the answer goes stale); oldest first.
        self._answers: dict[str, tuple[ApiKey | None, float]] = {}

    async def __call__(self, secret: str) -> ApiKey | None:
        digest, now = hash_key(secret), self._clock.monotonic()
        cached = self._answers.get(digest)
        if cached is not None and now < cached[1]:
            return cached[0]
        key = await self._lookup(secret)
        self._answers.pop(digest, None)
        if len(self._answers) >= self._max_entries:
            del self._answers[next(iter(self._answers))]
        self._answers[digest] = (key, self._clock.monotonic() + self._ttl_s)
        return key

    def __repr__(self) -> str:
        return f"CachedKeyLookup(ttl_s={self._ttl_s}, entries={len(self._answers)})"


@dataclass(frozen=True, slots=True)
class AuthOptions:
    """What a key must have to call the policy's target."""

    #: The role required (admins have every role).
    required_role: str = DEFAULT_REQUIRED_ROLE

    def __post_init__(self) -> None:
        if not self.required_role:
            raise ValueError("required_role: must not be empty")


@dataclass(frozen=True, slots=True)
class AuthFailed:
    """A call was refused; `reason` is missing, unknown, expired, role or scope."""

    target: str
    reason: str
    #: The key's name when it was recognised (never the secret).
    principal: str | None = None


RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")


class AuthPolicy(Generic[RequestT, ResponseT]):
    """Lets through calls whose API key is known, unexpired, has the role and the model scope.

    Sets `ctx.principal` to the key's name. Refuses to be built without keys or a `lookup`:
    with auth disabled, leave the policy out of the pipeline instead.
    """

    name = "auth"

    def __init__(
        self,
        options: AuthOptions | None = None,
        *,
        keys: Iterable[ApiKey] = (),
        lookup: KeyLookup | None = None,
        clock: Clock | None = None,
        on_event: EventSink = discard,
        target: str = "",
    ) -> None:
        self.options = options or AuthOptions()
        self.target = target
        self._clock = clock or SystemClock()
        self._on_event = on_event
        self._key_lookup = lookup
        self._by_hash: dict[str, ApiKey] = {}
        names: set[str] = set()
        for key in keys:
            if key.name in names:
                raise ValueError(f"keys: the name {key.name!r} is given twice")
            if key.sha256 in self._by_hash:
                raise ValueError(
                    f"keys: {key.name!r} has the same secret as {self._by_hash[key.sha256].name!r}"
                )
            names.add(key.name)
            self._by_hash[key.sha256] = key
        if not self._by_hash and lookup is None:
            raise ValueError("keys: at least one API key is needed (to disable auth, omit it)")

    async def __call__(
        self, request: RequestT, ctx: CallContext, call_next: Handler[RequestT, ResponseT]
    ) -> ResponseT:
        ctx.principal = (await self.verify(ctx.credentials)).name
        return await call_next(request, ctx)

    def check(self, credentials: str | None) -> ApiKey:
        """The configured key for `credentials` if it may call the target; else 401 or 403."""
        key = self._lookup(credentials) if credentials else None
        return self._checked(credentials, key)

    async def verify(self, credentials: str | None) -> ApiKey:
        """`check`, also asking the `lookup` when no configured key matches."""
        key = await self.authenticate(credentials)
        self._authorize(key)
        return key

    async def authenticate(self, credentials: str | None) -> ApiKey:
        """The known, unexpired key for `credentials` (else 401); its role and scope unchecked.

        For callers that authorize by rules of their own (the admin API's role per route).
        """
        key = self._lookup(credentials) if credentials else None
        if key is None and credentials and self._key_lookup is not None:
            key = await self._key_lookup(credentials)
        return self._authenticate(credentials, key)

    def _checked(self, credentials: str | None, key: ApiKey | None) -> ApiKey:
        key = self._authenticate(credentials, key)
        self._authorize(key)
        return key

    def _authenticate(self, credentials: str | None, key: ApiKey | None) -> ApiKey:
        where = self._where()
        if not credentials:
            message = "an API key is required: send 'Authorization: Bearer <key>' or 'x-api-key'"
            raise self._fail("missing", None, UnauthorizedError(where + message))
        if key is None:
            raise self._fail("unknown", None, UnauthorizedError(f"{where}unknown API key"))
        if key.expired(self._clock.time()):
            message = f"{where}API key {key.name!r} has expired"
            raise self._fail("expired", key.name, UnauthorizedError(message))
        return key

    def _authorize(self, key: ApiKey) -> None:
        where, role = self._where(), self.options.required_role
        if not key.has_role(role):
            has = ", ".join(sorted(key.roles))
            message = f"{where}API key {key.name!r} lacks the role {role!r} (it has: {has})"
            raise self._fail("role", key.name, ForbiddenError(message))
        if not key.may_call(self.target):
            scopes = ", ".join(sorted(key.models or ()))
            message = f"{where}API key {key.name!r} may not call this model (it may call: {scopes})"
            raise self._fail("scope", key.name, ForbiddenError(message))

    def _lookup(self, credentials: str) -> ApiKey | None:
        presented = hash_key(credentials)
        found = self._by_hash.get(presented)
        # Compare on a miss too, so a hit and a miss do the same work.
        expected = found.sha256 if found is not None else _NO_MATCH
        return found if hmac.compare_digest(presented, expected) else None

    def _fail(self, reason: str, principal: str | None, error: RejectedError) -> RejectedError:
        self._on_event(AuthFailed(self.target, reason, principal))
        return error

    def _where(self) -> str:
        return f"model {self.target!r}: " if self.target else ""

    def __repr__(self) -> str:
        lookup = "" if self._key_lookup is None else f", lookup={self._key_lookup!r}"
        return f"AuthPolicy(target={self.target!r}, keys={len(self._by_hash)}{lookup})"
