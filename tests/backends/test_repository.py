"""ModelRepository and ServedModel: lookup, default versions, concurrent loading, readiness."""

from __future__ import annotations

import asyncio
import logging

import pytest

from seawall.backends.mock import MockBackend
from seawall.backends.repository import ModelRepository, ModelState, ServedModel
from seawall.clock import FakeClock
from seawall.errors import ConfigError, ModelNotReadyError, NotFoundError


def served(name: str, version: str, backend: MockBackend | None = None) -> ServedModel:
    backend = backend or MockBackend(name)
    return ServedModel(name, version, backend, backend.infer)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_first_version_added_is_the_default() -> None:
    repository = ModelRepository()
    v1, v2 = served("m", "1"), served("m", "2")
    repository.add(v1)
    repository.add(v2)

    assert repository.get("m") is v1
    assert repository.get("m", "") is v1
    assert repository.get("m", "2") is v2
    assert repository.default_version("m") == "1"
    assert repository.versions("m") == ("1", "2")
    assert repository.versions("other") == ()


def test_version_marked_default_serves_unversioned_calls() -> None:
    repository = ModelRepository()
    repository.add(served("m", "1"))
    v2 = served("m", "2")
    repository.add(v2, default=True)
    repository.add(served("m", "3"))

    assert repository.get("m") is v2
    assert repository.default_version("m") == "2"


def test_unknown_model_is_not_found() -> None:
    repository = ModelRepository()
    repository.add(served("m", "1"))
    with pytest.raises(NotFoundError, match="model 'nope' not found"):
        repository.get("nope")


def test_unknown_version_is_not_found_and_lists_the_known_ones() -> None:
    repository = ModelRepository()
    repository.add(served("m", "2"))
    repository.add(served("m", "1"))
    with pytest.raises(NotFoundError) as raised:
        repository.get("m", "9")
    assert str(raised.value) == "model 'm' has no version '9' (versions: 1, 2)"


def test_duplicate_version_is_a_config_error() -> None:
    repository = ModelRepository()
    repository.add(served("m", "1"))
    with pytest.raises(ConfigError, match="'m' version '1' is defined twice"):
        repository.add(served("m", "1"))
    assert len(repository) == 1


def test_iterates_over_every_version_of_every_model() -> None:
    repository = ModelRepository()
    models = [served("a", "1"), served("a", "2"), served("b", "1")]
    for model in models:
        repository.add(model)
    assert list(repository) == models
    assert len(repository) == 3


async def test_load_all_loads_models_concurrently() -> None:
    clock = FakeClock()
    repository = ModelRepository(clock)
    a = served("a", "1", MockBackend("a", load_latency_s=2.0, clock=clock))
    b = served("b", "1", MockBackend("b", load_latency_s=2.0, clock=clock))
    repository.add(a)
    repository.add(b)

    task = asyncio.create_task(repository.load_all())
    await settle()
    assert clock.sleepers == 2  # both loads are waiting at once, not one after the other
    assert a.state is b.state is ModelState.LOADING

    clock.advance(2.0)
    await task
    assert a.state is b.state is ModelState.READY
    assert a.ready
    assert b.ready
    assert a.load_seconds == b.load_seconds == 2.0


async def test_failed_load_marks_that_model_failed_and_spares_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    repository = ModelRepository(FakeClock())
    broken = served("broken", "1", MockBackend(load_error=RuntimeError("disk on fire")))
    fine = served("fine", "1")
    repository.add(broken)
    repository.add(fine)

    with caplog.at_level(logging.ERROR, logger="seawall.models"):
        await repository.load_all()

    assert broken.state is ModelState.FAILED
    assert broken.reason == "RuntimeError: disk on fire"
    assert broken.load_seconds is None
    assert not broken.ready
    assert fine.state is ModelState.READY
    assert fine.reason == ""
    [record] = [r for r in caplog.records if r.getMessage() == "model failed to load"]
    assert record.__dict__["reason"] == "RuntimeError: disk on fire"


class FailsOnce(MockBackend):
    attempts = 0

    async def load(self) -> None:
        self.attempts += 1
        if self.attempts == 1:
            raise RuntimeError("first try")
        await super().load()


async def test_reloading_clears_the_previous_failure() -> None:
    model = served("m", "1", FailsOnce())
    repository = ModelRepository()
    repository.add(model)
    await repository.load_all()
    assert (model.state, model.reason) == (ModelState.FAILED, "RuntimeError: first try")

    await repository.load_all()
    assert (model.state, model.reason) == (ModelState.READY, "")


async def test_the_generation_counts_successful_loads_only() -> None:
    flaky, steady = served("m", "1", FailsOnce()), served("m", "2")
    repository = ModelRepository()
    repository.add(flaky)
    repository.add(steady)
    assert (flaky.generation, steady.generation) == (0, 0)

    await repository.load_all()
    assert (flaky.generation, steady.generation) == (0, 1)
    await repository.load_all()  # a reload: answers cached for generation 1 are stale now
    assert (flaky.generation, steady.generation) == (1, 2)


def test_check_ready_while_loading_says_so_and_suggests_a_retry() -> None:
    model = served("m", "3")
    with pytest.raises(ModelNotReadyError) as raised:
        model.check_ready()
    assert str(raised.value) == "model 'm' version '3' is loading"
    assert raised.value.retry_after_s == 5.0
    with pytest.raises(ModelNotReadyError):
        model.metadata()


async def test_check_ready_of_a_failed_model_gives_the_reason() -> None:
    model = served("m", "1", MockBackend(load_error=ValueError("bad weights")))
    repository = ModelRepository()
    repository.add(model)
    await repository.load_all()

    with pytest.raises(ModelNotReadyError) as raised:
        model.check_ready()
    assert str(raised.value) == "model 'm' version '1' is failed: ValueError: bad weights"
    assert raised.value.retry_after_s is None


async def test_check_ready_passes_only_when_the_backend_is_ready_too() -> None:
    backend = MockBackend("m")
    model = served("m", "1", backend)
    repository = ModelRepository()
    repository.add(model)
    await repository.load_all()

    model.check_ready()
    assert model.metadata().name == "m"

    await backend.close()  # state still says READY, but the backend cannot serve
    assert model.state is ModelState.READY
    assert not model.ready
    with pytest.raises(ModelNotReadyError, match="version '1' is not ready"):
        model.check_ready()


class FailingClose(MockBackend):
    async def close(self) -> None:
        await super().close()
        raise RuntimeError("close failed")


async def test_close_all_closes_every_backend_even_when_one_close_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    repository = ModelRepository()
    first = served("first", "1", FailingClose("first"))
    second = served("second", "1")
    third = served("third", "1", MockBackend(load_error=RuntimeError("never loaded")))
    for model in (first, second, third):
        repository.add(model)
    await repository.load_all()
    assert second.backend.ready()

    with caplog.at_level(logging.ERROR, logger="seawall.models"):
        await repository.close_all()

    assert not second.backend.ready()
    assert [m.state for m in repository] == [ModelState.UNLOADED] * 3
    assert any(r.getMessage() == "backend failed to close" for r in caplog.records)


async def test_load_seconds_is_measured_on_the_repository_clock() -> None:
    clock = FakeClock()
    repository = ModelRepository(clock)
    quick = served("quick", "1", MockBackend(load_latency_s=0.25, clock=clock))
    slow = served("slow", "1", MockBackend(load_latency_s=4.0, clock=clock))
    repository.add(quick)
    repository.add(slow)

    task = asyncio.create_task(repository.load_all())
    await settle()
    clock.advance(0.25)
    await settle()
    assert quick.state is ModelState.READY
    assert slow.state is ModelState.LOADING
    clock.advance(3.75)
    await task

    assert quick.load_seconds == 0.25
    assert slow.load_seconds == 4.0
