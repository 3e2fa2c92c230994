"""AuthPolicy: 401 versus 403, roles, scopes, expiry, constant-time lookup, no leaked secrets."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from typing import Any

import pytest

from seawall.clock import FakeClock
from seawall.context import CallContext
from seawall.errors import ForbiddenError, RejectedError, UnauthorizedError
from seawall.pipeline import Pipeline
from seawall.policies.auth import (
    ApiKey,
    AuthFailed,
    AuthOptions,
    AuthPolicy,
    CachedKeyLookup,
    hash_key,
)

CLOCK_WALL_START = 1_700_000_000.0

KEYS = (
    ApiKey.from_plaintext("alice", "sk-alice-secret"),
    ApiKey.from_plaintext("reader", "sk-reader-secret", roles={"reader"}),
    ApiKey.from_plaintext("root", "sk-root-secret", roles={"admin"}),
    ApiKey.from_plaintext("iris-only", "sk-iris-secret", models={"iris"}),
    ApiKey.from_plaintext("wine-2", "sk-wine2-secret", models={"wine:2", "other-*"}),
    ApiKey.from_plaintext("scoped-root", "sk-sroot-secret", roles={"admin"}, models={"wine"}),
    ApiKey.from_plaintext("temp", "sk-temp-secret", expires_at=CLOCK_WALL_START + 60.0),
)


class Harness:
    """An AuthPolicy for `target` on a FakeClock, recording events and what reached `call_next`."""

    def __init__(self, target: str = "iris:1", options: AuthOptions | None = None) -> None:
        self.clock = FakeClock(wall_start=CLOCK_WALL_START)
        self.events: list[object] = []
        self.principals: list[str | None] = []
        self.policy: AuthPolicy[str, str] = AuthPolicy(
            options, keys=KEYS, clock=self.clock, on_event=self.events.append, target=target
        )

    async def call_next(self, request: str, ctx: CallContext) -> str:
        self.principals.append(ctx.principal)
        return "ok"

    async def call(self, credentials: str | None) -> CallContext:
        ctx = CallContext.new("r", credentials=credentials)
        assert await self.policy("req", ctx, self.call_next) == "ok"
        return ctx

    async def refused(self, credentials: str | None) -> RejectedError:
        passed = len(self.principals)
        with pytest.raises(RejectedError) as info:
            await self.call(credentials)
        assert len(self.principals) == passed  # a refused call never reaches the backend
        return info.value


# --- the 401 / 403 matrix ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "secret", "principal"),
    [
        ("iris:1", "sk-alice-secret", "alice"),
        ("iris:1", "sk-root-secret", "root"),  # admin implies consumer
        ("iris:1", "sk-iris-secret", "iris-only"),  # "iris" covers every version of iris
        ("iris", "sk-iris-secret", "iris-only"),
        ("wine:2", "sk-wine2-secret", "wine-2"),
        ("other-model", "sk-wine2-secret", "wine-2"),  # a wildcard scope
        ("wine:1", "sk-sroot-secret", "scoped-root"),
        ("iris:1", "sk-temp-secret", "temp"),  # not expired yet
    ],
)
async def test_allowed_calls_set_the_principal(target: str, secret: str, principal: str) -> None:
    h = Harness(target)
    ctx = await h.call(secret)
    assert ctx.principal == principal
    assert h.principals == [principal]
    assert h.events == []


@pytest.mark.parametrize(
    ("target", "secret", "error", "reason", "principal", "message"),
    [
        ("iris:1", None, UnauthorizedError, "missing", None,
         "model 'iris:1': an API key is required: send 'Authorization: Bearer <key>' or "
         "'x-api-key'"),
        ("iris:1", "", UnauthorizedError, "missing", None, None),
        ("iris:1", "sk-nobody", UnauthorizedError, "unknown", None,
         "model 'iris:1': unknown API key"),
        ("iris:1", "sk-alice-secret ", UnauthorizedError, "unknown", None, None),
        ("iris:1", hash_key("sk-alice-secret"), UnauthorizedError, "unknown", None, None),
        ("iris:1", "sk-reader-secret", ForbiddenError, "role", "reader",
         "model 'iris:1': API key 'reader' lacks the role 'consumer' (it has: reader)"),
        ("wine:1", "sk-iris-secret", ForbiddenError, "scope", "iris-only",
         "model 'wine:1': API key 'iris-only' may not call this model (it may call: iris)"),
        ("irisx", "sk-iris-secret", ForbiddenError, "scope", "iris-only", None),
        ("wine:1", "sk-wine2-secret", ForbiddenError, "scope", "wine-2",
         "model 'wine:1': API key 'wine-2' may not call this model (it may call: other-*, wine:2)"),
        ("iris:1", "sk-sroot-secret", ForbiddenError, "scope", "scoped-root", None),
    ],
)  # fmt: skip
async def test_refusals_are_401_without_a_known_key_and_403_without_the_right(
    target: str,
    secret: str | None,
    error: type[RejectedError],
    reason: str,
    principal: str | None,
    message: str | None,
) -> None:
    h = Harness(target)
    refusal = await h.refused(secret)
    assert type(refusal) is error
    assert refusal.retry_after_s is None  # waiting does not help
    assert h.events == [AuthFailed(target, reason, principal)]
    if message is not None:
        assert str(refusal) == message
    if secret:
        assert secret not in str(refusal)
        assert hash_key(secret) not in str(refusal)


async def test_the_required_role_is_configurable_and_admin_has_it() -> None:
    h = Harness(options=AuthOptions(required_role="reader"))
    assert (await h.call("sk-reader-secret")).principal == "reader"
    assert (await h.call("sk-root-secret")).principal == "root"
    refusal = await h.refused("sk-alice-secret")
    assert isinstance(refusal, ForbiddenError)


async def test_a_scoped_key_is_refused_by_a_policy_without_a_target() -> None:
    h = Harness(target="")
    assert (await h.call("sk-alice-secret")).principal == "alice"
    refusal = await h.refused("sk-iris-secret")
    assert str(refusal) == "API key 'iris-only' may not call this model (it may call: iris)"


async def test_a_key_expires_on_the_wall_clock() -> None:
    h = Harness()
    h.clock.advance(59.999)
    assert (await h.call("sk-temp-secret")).principal == "temp"
    h.clock.advance(0.001)
    refusal = await h.refused("sk-temp-secret")
    assert isinstance(refusal, UnauthorizedError)
    assert str(refusal) == "model 'iris:1': API key 'temp' has expired"
    assert h.events == [AuthFailed("iris:1", "expired", "temp")]


# --- constant time, secrets --------------------------------------------------------------------


@pytest.mark.parametrize("secret", ["sk-alice-secret", "sk-nobody", "sk-alice-secreT"])
async def test_every_lookup_compares_with_compare_digest(
    monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    compared: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    h = Harness()
    with contextlib.suppress(UnauthorizedError):
        await h.call(secret)
    # Hit or miss: one comparison of the presented key's SHA-256 with a 64-digit digest.
    assert len(compared) == 1
    presented, expected = compared[0]
    assert presented == hashlib.sha256(secret.encode()).hexdigest()
    assert len(expected) == 64


async def test_a_wrong_comparison_result_means_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    # The comparison, not just the dictionary lookup, decides.
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: False)
    refusal = await Harness().refused("sk-alice-secret")
    assert isinstance(refusal, UnauthorizedError)


def test_key_objects_never_show_the_secret_or_its_hash() -> None:
    key = ApiKey.from_plaintext("alice", "sk-very-secret", roles={"consumer"}, models={"iris"})
    digest = hash_key("sk-very-secret")
    assert key.sha256 == digest
    for text in (repr(key), str(key), repr(KEYS), repr(Harness().policy)):
        assert "sk-very-secret" not in text
        assert digest not in text
        assert hash_key("sk-alice-secret") not in text
    assert repr(key) == (
        "ApiKey(name='alice', roles=frozenset({'consumer'}), models=frozenset({'iris'}), "
        "expires_at=None)"
    )
    assert not hasattr(key, "__dict__")  # nowhere to keep the plaintext


def test_a_context_does_not_show_the_credentials() -> None:
    ctx = CallContext.new("r", credentials="sk-alice-secret")
    assert "sk-alice-secret" not in repr(ctx)


# --- construction ------------------------------------------------------------------------------


def test_keys_are_checked_when_built() -> None:
    digest = hash_key("x")
    with pytest.raises(ValueError, match=r"^keys: at least one API key"):
        AuthPolicy(keys=[])
    with pytest.raises(ValueError, match=r"^keys: the name 'a' is given twice"):
        AuthPolicy(keys=[ApiKey("a", digest), ApiKey("a", hash_key("y"))])
    with pytest.raises(ValueError, match=r"^keys: 'b' has the same secret as 'a'"):
        AuthPolicy(keys=[ApiKey("a", digest), ApiKey("b", digest.upper())])
    with pytest.raises(ValueError, match=r"^sha256: key 'a' needs 64 hex digits") as info:
        ApiKey("a", "sk-plaintext-by-mistake")
    assert "sk-plaintext" not in str(info.value)
    with pytest.raises(ValueError, match=r"^sha256: "):
        ApiKey("a", "g" * 64)
    with pytest.raises(ValueError, match=r"^name: "):
        ApiKey(" a", digest)
    with pytest.raises(ValueError, match=r"^roles: "):
        ApiKey("a", digest, roles=frozenset())
    with pytest.raises(ValueError, match=r"^models: "):
        ApiKey("a", digest, models=frozenset())
    with pytest.raises(ValueError, match=r"^expires_at: "):
        ApiKey("a", digest, expires_at=float("nan"))
    with pytest.raises(ValueError, match=r"^secret: "):
        ApiKey.from_plaintext("a", "")
    with pytest.raises(ValueError, match=r"^required_role: "):
        AuthOptions(required_role="")


def test_a_hash_from_config_is_normalised_to_lower_case() -> None:
    key = ApiKey("a", hash_key("x").upper(), roles=["consumer", "reader"])  # type: ignore[arg-type]
    assert key.sha256 == hash_key("x")
    assert key.roles == frozenset({"consumer", "reader"})


async def test_the_policy_is_named_in_a_pipeline() -> None:
    h = Harness()
    pipeline = Pipeline([h.policy], h.call_next)
    assert repr(pipeline) == "Pipeline(auth → Harness.call_next)"
    assert repr(h.policy) == f"AuthPolicy(target='iris:1', keys={len(KEYS)})"
    ctx = CallContext.new("r", credentials="sk-alice-secret")
    assert await pipeline("req", ctx) == "ok"
    assert ctx.principal == "alice"


# --- keys from a lookup (the database) ---------------------------------------------------------


class Lookup:
    """A `KeyLookup` over a dict of secrets, counting the calls it answers."""

    def __init__(self, keys: dict[str, ApiKey]) -> None:
        self.keys = keys
        self.calls = 0

    async def __call__(self, secret: str) -> ApiKey | None:
        self.calls += 1
        return self.keys.get(secret)


async def test_a_lookup_is_asked_when_no_configured_key_matches() -> None:
    clock = FakeClock(wall_start=CLOCK_WALL_START)
    lookup = Lookup(
        {
            "sw-db": ApiKey.from_plaintext("db-key", "sw-db"),
            "sw-old": ApiKey.from_plaintext("old", "sw-old", expires_at=CLOCK_WALL_START - 1),
            "sw-view": ApiKey.from_plaintext("viewer", "sw-view", roles={"viewer"}),
        }
    )
    policy: AuthPolicy[str, str] = AuthPolicy(keys=KEYS, lookup=lookup, clock=clock, target="m")
    assert (await policy.verify("sk-alice-secret")).name == "alice"
    assert lookup.calls == 0  # configured keys are found without it
    assert (await policy.verify("sw-db")).name == "db-key"
    with pytest.raises(UnauthorizedError, match="unknown API key"):
        await policy.verify("sw-nobody")
    with pytest.raises(UnauthorizedError, match="'old' has expired"):
        await policy.verify("sw-old")
    with pytest.raises(ForbiddenError, match="'viewer' lacks the role 'consumer'"):
        await policy.verify("sw-view")
    with pytest.raises(UnauthorizedError, match="required"):
        await policy.verify(None)
    assert lookup.calls == 4
    with pytest.raises(UnauthorizedError, match="unknown API key"):
        policy.check("sw-db")  # the synchronous check knows configured keys only


async def test_authenticate_checks_the_key_but_neither_role_nor_scope() -> None:
    clock = FakeClock(wall_start=CLOCK_WALL_START)
    lookup = Lookup({"sw-view": ApiKey.from_plaintext("viewer", "sw-view", roles={"viewer"})})
    policy: AuthPolicy[str, str] = AuthPolicy(keys=KEYS, lookup=lookup, clock=clock, target="m")
    assert (await policy.authenticate("sw-view")).name == "viewer"  # verify: 403 (role)
    assert (await policy.authenticate("sk-iris-secret")).name == "iris-only"  # verify: 403 (scope)
    with pytest.raises(UnauthorizedError, match="unknown API key"):
        await policy.authenticate("sw-nobody")
    with pytest.raises(UnauthorizedError, match="required"):
        await policy.authenticate(None)
    clock.advance(60.0)
    with pytest.raises(UnauthorizedError, match="'temp' has expired"):
        await policy.authenticate("sk-temp-secret")


async def test_a_lookup_alone_is_enough_to_build_the_policy() -> None:
    lookup = Lookup({"sw-db": ApiKey.from_plaintext("db-key", "sw-db")})
    policy: AuthPolicy[str, str] = AuthPolicy(lookup=CachedKeyLookup(lookup, ttl_s=5))
    ctx = CallContext.new("r", credentials="sw-db")
    assert await policy("req", ctx, lambda request, ctx: _ok()) == "ok"
    assert ctx.principal == "db-key"
    assert (
        repr(policy) == "AuthPolicy(target='', keys=0, lookup=CachedKeyLookup(ttl_s=5, entries=1))"
    )


async def _ok() -> str:
    return "ok"


async def test_the_cache_reuses_answers_for_the_ttl_then_asks_again() -> None:
    clock = FakeClock()
    key = ApiKey.from_plaintext("db-key", "sw-db")
    lookup = Lookup({"sw-db": key})
    cache = CachedKeyLookup(lookup, clock=clock, ttl_s=5.0)
    assert await cache("sw-db") is key
    assert await cache("sw-nobody") is None
    clock.advance(4.9)
    assert await cache("sw-db") is key
    assert await cache("sw-nobody") is None  # misses are cached too
    assert lookup.calls == 2
    del lookup.keys["sw-db"]  # revoked
    assert await cache("sw-db") is key  # still within the TTL
    clock.advance(0.1)
    assert await cache("sw-db") is None
    assert lookup.calls == 3


async def test_the_cache_is_bounded_and_never_holds_a_secret() -> None:
    lookup = Lookup({})
    cache = CachedKeyLookup(lookup, clock=FakeClock(), max_entries=2)
    for secret in ("sw-a", "sw-b", "sw-c"):
        await cache(secret)
    assert "sw-" not in repr(cache._answers)
    assert len(cache._answers) == 2
    assert set(cache._answers) == {hash_key("sw-b"), hash_key("sw-c")}
    await cache("sw-a")  # dropped: asked again
    assert lookup.calls == 4
    with pytest.raises(ValueError, match=r"^ttl_s: "):
        CachedKeyLookup(lookup, ttl_s=-1)
    with pytest.raises(ValueError, match=r"^max_entries: "):
        CachedKeyLookup(lookup, max_entries=0)
