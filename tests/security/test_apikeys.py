"""`ApiKeyStore` on SQLite and PostgreSQL: issue, look up, revoke, rotate, expire; audited."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime, timedelta
from typing import get_args

import pytest
from sqlalchemy import text

from seawall.clock import FakeClock
from seawall.config.policies import ApiKeySettings
from seawall.errors import UnauthorizedError
from seawall.policies.auth import ApiKey, AuthPolicy, CachedKeyLookup, hash_key
from seawall.security import apikeys
from seawall.security.apikeys import (
    ROLES,
    ApiKeyRecord,
    ApiKeyStore,
    KeyNameInUseError,
    UnknownKeyError,
    hash_secret,
)
from seawall.store import AuditLog, Database

ACTOR = "cli:alice"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(migrated: Database, clock: FakeClock) -> ApiKeyStore:
    return ApiKeyStore(migrated, clock=clock)


def _now(clock: FakeClock) -> datetime:
    return datetime.fromtimestamp(clock.time(), UTC)


def test_the_roles_are_those_config_accepts() -> None:
    annotation = ApiKeySettings.model_fields["roles"].annotation
    (literal,) = get_args(annotation)
    assert frozenset(get_args(literal)) == ROLES


def test_secrets_are_random_prefixed_and_hashed_as_config_hashes_them() -> None:
    first, second = apikeys.generate_secret(), apikeys.generate_secret()
    assert first != second
    assert first.startswith("sw_")
    assert len(first) == 3 + 43
    assert hash_secret(first) == hash_key(first)


async def test_a_created_key_is_found_by_its_secret(store: ApiKeyStore, clock: FakeClock) -> None:
    record, secret = await store.create("app", ["consumer"], ["iris*"], actor=ACTOR)
    assert record.prefix == secret[:8]
    assert (record.name, record.roles, record.models) == ("app", ("consumer",), ("iris*",))
    assert record.created_at == _now(clock)
    assert record.created_by == ACTOR
    assert await store.lookup(secret) == record
    assert await store.lookup(secret + "x") is None
    assert await store.lookup("sw_" + "A" * 43) is None


async def test_the_secret_is_never_stored(store: ApiKeyStore, migrated: Database) -> None:
    _, secret = await store.create("app", ["consumer", "viewer"], actor=ACTOR)
    _, rotated = await store.rotate("app", actor=ACTOR)
    with migrated.begin(read_only=True) as connection:
        rows = connection.execute(text("SELECT * FROM api_keys")).all()
        audit = connection.execute(text("SELECT * FROM audit_log")).all()
    cells = [str(cell) for row in [*rows, *audit] for cell in row]
    for kept in (secret, rotated):
        assert not [cell for cell in cells if kept in cell or kept[8:] in cell]
    # The hash is in the key table (for lookups) but not in the audit log.
    assert not [cell for row in audit for cell in map(str, row) if hash_secret(secret) in cell]


async def test_lookup_compares_in_constant_time_on_hits_and_misses(
    store: ApiKeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, secret = await store.create("app", ["consumer"], actor=ACTOR)
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def compare(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("seawall.security.apikeys.hmac.compare_digest", compare)
    assert await store.lookup(secret) is not None
    assert await store.lookup("sw_wrong") is None
    assert calls == [(hash_secret(secret),) * 2, (hash_secret("sw_wrong"), "0" * 64)]


async def test_bad_input_names_the_field_and_writes_nothing(
    store: ApiKeyStore, clock: FakeClock
) -> None:
    await store.create("app", ["consumer"], actor=ACTOR)
    cases = [
        ({"name": "app", "roles": ["consumer"]}, "name: a key named 'app' exists"),
        ({"name": "x", "roles": ["root"]}, "roles: unknown"),
        ({"name": "x", "roles": []}, "roles: at least one"),
        ({"name": " x", "roles": ["consumer"]}, "name: printable"),
        ({"name": "x", "roles": ["consumer"], "models": []}, "models: non-empty"),
        ({"name": "x", "roles": ["consumer"], "expires_at": _now(clock)}, "expires_at: must be"),
        ({"name": "x", "roles": ["consumer"], "expires_at": datetime(2030, 1, 1)}, "time zone"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message) as raised:
            await store.create(**kwargs, actor=ACTOR)  # type: ignore[arg-type]
        # A name in use is a conflict (409 in the admin API), the rest bad fields (422).
        assert isinstance(raised.value, KeyNameInUseError) == message.startswith("name: a key")
    assert [k.name for k in await store.list()] == ["app"]
    assert len(await AuditLog(store.database).records()) == 1


async def test_a_key_stops_working_when_it_expires(store: ApiKeyStore, clock: FakeClock) -> None:
    expiry = _now(clock) + timedelta(hours=1)
    record, secret = await store.create("app", ["consumer"], expires_at=expiry, actor=ACTOR)
    assert record.expires_at == expiry
    clock.advance(3599)
    assert await store.lookup(secret) is not None
    clock.advance(1)
    assert await store.lookup(secret) is None


async def test_a_revoked_key_stops_working_at_once_and_frees_its_name(
    store: ApiKeyStore, clock: FakeClock
) -> None:
    _, secret = await store.create("app", ["consumer"], actor=ACTOR)
    (revoked,) = await store.revoke("app", actor="cli:bob")
    assert revoked.revoked_at == _now(clock)
    assert await store.lookup(secret) is None
    assert await store.list() == []
    assert [k.name for k in await store.list(include_revoked=True)] == ["app"]
    with pytest.raises(UnknownKeyError, match="name: no key named 'app' is active"):
        await store.revoke("app", actor=ACTOR)
    _, again = await store.create("app", ["viewer"], actor=ACTOR)
    assert (await store.lookup(again)) is not None


async def test_rotation_replaces_the_secret_and_keeps_the_grants(
    store: ApiKeyStore, clock: FakeClock
) -> None:
    expiry = _now(clock) + timedelta(days=30)
    old, secret = await store.create("app", ["deployer"], ["iris"], expiry, actor=ACTOR)
    new, rotated = await store.rotate("app", actor="cli:bob")
    assert rotated != secret
    assert new.id != old.id
    assert (new.roles, new.models, new.expires_at) == (old.roles, old.models, old.expires_at)
    assert new.created_by == "cli:bob"
    assert await store.lookup(secret) is None
    assert await store.lookup(rotated) == new
    with pytest.raises(UnknownKeyError, match="name: no key named 'nope' is active"):
        await store.rotate("nope", actor=ACTOR)


async def test_rotation_with_an_overlap_keeps_the_old_key_working_until_it_ends(
    store: ApiKeyStore, clock: FakeClock
) -> None:
    _, secret = await store.create("app", ["consumer"], actor=ACTOR)
    _, rotated = await store.rotate("app", actor=ACTOR, overlap_s=60)
    assert [k.prefix for k in await store.list()] == [secret[:8], rotated[:8]]
    clock.advance(59)
    assert await store.lookup(secret) is not None
    clock.advance(1)
    assert await store.lookup(secret) is None
    assert await store.lookup(rotated) is not None
    for overlap_s in (-1, 1e12, float("nan")):  # 1e12 s would be past the year 9999
        with pytest.raises(ValueError, match="overlap_s: seconds from 0 to 31536000"):
            await store.rotate("app", actor=ACTOR, overlap_s=overlap_s)


async def test_revoking_during_an_overlap_stops_both_keys(store: ApiKeyStore) -> None:
    _, secret = await store.create("app", ["consumer"], actor=ACTOR)
    _, rotated = await store.rotate("app", actor=ACTOR, overlap_s=600)
    revoked = await store.revoke("app", actor=ACTOR)
    assert [k.prefix for k in revoked] == [secret[:8], rotated[:8]]
    assert await store.lookup(secret) is None
    assert await store.lookup(rotated) is None


async def test_every_change_is_audited_and_the_chain_verifies(store: ApiKeyStore) -> None:
    created, _ = await store.create("app", ["consumer"], ["iris"], actor=ACTOR)
    rotated, _ = await store.rotate("app", actor="cli:bob", overlap_s=5)
    await store.revoke("app", actor="cli:carol")
    log = AuditLog(store.database)
    records = await log.records()
    assert [(r.actor, r.action, r.target) for r in records] == [
        (ACTOR, "key.create", "app"),
        ("cli:bob", "key.rotate", "app"),
        ("cli:carol", "key.revoke", "app"),
    ]
    assert records[0].details == {
        "name": "app",
        "prefix": created.prefix,
        "roles": ["consumer"],
        "models": ["iris"],
        "expires_at": None,
    }
    assert records[1].details["old_prefix"] == created.prefix
    assert records[1].details["prefix"] == rotated.prefix
    assert records[1].details["overlap_s"] == 5
    assert records[2].details == {"name": "app", "prefixes": [created.prefix, rotated.prefix]}
    assert (await log.verify()).ok


async def test_a_failed_audit_append_undoes_the_change(store: ApiKeyStore) -> None:
    with pytest.raises(ValueError, match="actor"):
        await store.create("app", ["consumer"], actor="")
    assert await store.list(include_revoked=True) == []


def _api_key(record: ApiKeyRecord, secret: str) -> ApiKey:
    """A database key as the auth policy sees it (what the gateway's wiring will do)."""
    expires_at = None if record.expires_at is None else record.expires_at.timestamp()
    models = None if record.models is None else frozenset(record.models)
    return ApiKey(record.name, hash_key(secret), frozenset(record.roles), models, expires_at)


async def test_database_keys_pass_the_auth_policy_and_revocation_lands_within_the_ttl(
    store: ApiKeyStore, clock: FakeClock
) -> None:
    async def lookup(secret: str) -> ApiKey | None:
        record = await store.lookup(secret)
        return None if record is None else _api_key(record, secret)

    cache = CachedKeyLookup(lookup, clock=clock, ttl_s=5.0)
    policy: AuthPolicy[str, str] = AuthPolicy(lookup=cache, clock=clock, target="iris:1")
    _, secret = await store.create("app", ["consumer"], ["iris"], actor=ACTOR)
    assert (await policy.verify(secret)).name == "app"
    with pytest.raises(UnauthorizedError):
        await policy.verify(secret[:-1])
    await store.revoke("app", actor=ACTOR)
    clock.advance(4.9)
    assert (await policy.verify(secret)).name == "app"  # the cached answer
    clock.advance(0.1)
    with pytest.raises(UnauthorizedError, match="unknown API key"):
        await policy.verify(secret)
