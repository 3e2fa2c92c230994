"""Helpers of the rollout e2e tests: steady load from client threads, and the admin API.

`Load` runs client threads that call one model in a loop and keep every call's outcome (a
transport error or timeout is kept too: a lost call); `Admin` starts and watches rollouts over
HTTP with an admin key. Every wait is bounded.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest

__all__ = ["Admin", "Call", "Load", "share", "upper_bound"]

#: Longest any single HTTP call may take; a slower one counts as lost.
HTTP_TIMEOUT_S = 15.0
#: Longest a `Load` runs, whatever happens to the test.
MAX_LOAD_S = 90.0
VARIANT_HEADER = "x-seawall-variant"
SERVED_BY_HEADER = "x-seawall-served-by"


@dataclass(frozen=True, slots=True)
class Call:
    """One call as its client saw it."""

    #: Wall-clock time (Unix seconds) when it was sent: comparable with decisions' `at`.
    sent: float
    #: The HTTP status; None when no response came (connection error or timeout).
    status: int | None
    #: `x-seawall-variant` of the response (stable, canary), if any.
    variant: str | None
    #: `x-seawall-served-by` (`model:version`), if any.
    served_by: str | None
    #: The error body of a non-200, or the transport error of a lost call.
    problem: str = ""


def body(i: int) -> dict[str, Any]:
    """An inference request for a mock model (one FP32 row, echoed back)."""
    return {"inputs": [{"name": "input-0", "shape": [1, 2], "datatype": "FP32", "data": [i, 0.5]}]}


def call(http: httpx.Client, model: str, i: int, headers: dict[str, str] | None = None) -> Call:
    """One inference call; a transport error or timeout is a lost call, not an exception."""
    sent = time.time()
    try:
        r = http.post(f"/v2/models/{model}/infer", json=body(i), headers=headers)
    except httpx.TransportError as exc:  # connection refused or reset, timeouts
        return Call(sent, None, None, None, repr(exc))
    problem = "" if r.status_code == 200 else r.text
    variant, served_by = r.headers.get(VARIANT_HEADER), r.headers.get(SERVED_BY_HEADER)
    return Call(sent, r.status_code, variant, served_by, problem)


class Load:
    """`clients` threads calling `model` back to back until `stop()` (at most `MAX_LOAD_S`)."""

    def __init__(self, url: str, model: str, *, key: str, clients: int) -> None:
        self.url = url
        self.model = model
        self._headers = {"authorization": f"Bearer {key}"}
        self._stop = threading.Event()
        self._connected = threading.Barrier(clients + 1)
        self._calls: list[list[Call]] = [[] for _ in range(clients)]
        self._threads = [
            threading.Thread(target=self._client, args=(i,), name=f"load-{i}", daemon=True)
            for i in range(clients)
        ]
        self.started = 0.0
        self.stopped = 0.0

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        self._connected.wait(timeout=HTTP_TIMEOUT_S)
        self.started = time.time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> list[Call]:
        """Stop the clients; every call they made, in the order sent."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=HTTP_TIMEOUT_S + 5)
        alive = [t.name for t in self._threads if t.is_alive()]
        assert not alive, f"load clients still running: {alive}"
        if not self.stopped:
            self.stopped = time.time()
        return sorted((c for calls in self._calls for c in calls), key=lambda c: c.sent)

    def _client(self, index: int) -> None:
        seen = self._calls[index]
        with httpx.Client(base_url=self.url, timeout=HTTP_TIMEOUT_S, headers=self._headers) as http:
            http.get("/v2/health/live")  # connected before the load starts
            self._connected.wait(timeout=HTTP_TIMEOUT_S)
            deadline = time.monotonic() + MAX_LOAD_S
            i = index * 1_000_000
            while not self._stop.is_set() and time.monotonic() < deadline:
                seen.append(call(http, self.model, i))
                i += 1


class Admin:
    """The admin API's rollout routes for one model, with an admin key."""

    def __init__(self, url: str, model: str, *, key: str) -> None:
        self.model = model
        self.http = httpx.Client(
            base_url=url, timeout=HTTP_TIMEOUT_S, headers={"authorization": f"Bearer {key}"}
        )

    def close(self) -> None:
        self.http.close()

    def start(self, plan: dict[str, Any]) -> dict[str, Any]:
        """POST /admin/rollouts; the rollout as stored."""
        response = self.http.post("/admin/rollouts", json=plan)
        assert response.status_code == 201, response.text
        record: dict[str, Any] = response.json()
        return record

    def rollout(self) -> dict[str, Any]:
        """GET /admin/rollouts/{model}."""
        response = self.http.get(f"/admin/rollouts/{self.model}")
        assert response.status_code == 200, response.text
        record: dict[str, Any] = response.json()
        return record

    def history(self) -> list[dict[str, Any]]:
        """GET /admin/rollouts/{model}/history: the decisions, oldest first."""
        response = self.http.get(f"/admin/rollouts/{self.model}/history")
        assert response.status_code == 200, response.text
        decisions: list[dict[str, Any]] = response.json()
        return decisions

    def command(self, name: str, reason: str) -> dict[str, Any]:
        """POST /admin/rollouts/{model}/{name} (pause, resume, abort, promote)."""
        response = self.http.post(f"/admin/rollouts/{self.model}/{name}", json={"reason": reason})
        assert response.status_code == 200, response.text
        record: dict[str, Any] = response.json()
        return record

    def wait_for(self, status: str, *, timeout_s: float, poll_s: float = 0.05) -> dict[str, Any]:
        """Poll until the rollout's status is `status`; fail at another final one or timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            record = self.rollout()
            if record["status"] == status:
                return record
            if record["status"] in ("promoted", "rolled_back", "aborted", "paused"):
                pytest.fail(f"rollout is {record['status']}, not {status}: {self.explain()}")
            if time.monotonic() > deadline:
                pytest.fail(f"rollout not {status} after {timeout_s} s: {self.explain()}")
            time.sleep(poll_s)

    def explain(self) -> str:
        """The rollout's status and its decisions, for a failure message."""
        record = self.rollout()
        lines = [f"{record['status']} at step {record['step_index']}: {record['reason']}"]
        lines += [f"  {d['at']} {d['kind']} w={d['weight']} {d['reason']}" for d in self.history()]
        return "\n".join(lines)

    def decided(self, kind: str) -> list[dict[str, Any]]:
        """The decisions of one kind (weight, analysis, rolled_back, promoted...)."""
        return [d for d in self.history() if d["kind"] == kind]


def at(decision: dict[str, Any]) -> float:
    """A decision's time as Unix seconds."""
    return datetime.fromisoformat(decision["at"]).timestamp()


def upper_bound(p: float, n: int, sigmas: float = 3.0) -> float:
    """`p` plus `sigmas` standard deviations of the mean of `n` Bernoulli(p) draws."""
    return p + sigmas * math.sqrt(p * (1 - p) / n)


def share(calls: Sequence[Call], variant: str) -> float:
    """The share of `calls` answered by `variant`."""
    return sum(c.variant == variant for c in calls) / len(calls) if calls else math.nan
