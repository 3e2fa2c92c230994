"""CallContext: request ids, W3C trace context, deadlines."""

from __future__ import annotations

import re

import pytest

from seawall.context import CallContext, TraceIds, new_request_id

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def test_new_request_id_is_random_128_bit_hex() -> None:
    ids = {new_request_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(HEX32.match(i) for i in ids)


@pytest.mark.parametrize(
    "request_id",
    [
        "abc-123",
        "a" * 128,
        "with space and punctuation: !#$%&'()*+,-./:;<=>?@[]^_`{|}~",
        "0",
    ],
)
def test_a_usable_request_id_is_kept(request_id: str) -> None:
    assert CallContext.new(request_id).request_id == request_id


@pytest.mark.parametrize(
    "request_id",
    [
        None,
        "",
        "a" * 129,
        "café",
        "id\u2028",
        "line\nbreak",
        "tab\there",
        "nul\x00",
        "del\x7f",
        "esc\x1b[31m",
    ],
)
def test_an_unusable_request_id_is_replaced(request_id: str | None) -> None:
    # Echoed in a response header and written to logs: must be short printable ASCII.
    ctx = CallContext.new(request_id)
    assert ctx.request_id != request_id
    assert HEX32.match(ctx.request_id)


def test_new_fills_the_context() -> None:
    headers = {"x-tenant": "acme"}
    ctx = CallContext.new("r1", deadline=12.5, principal="alice", headers=headers)
    assert ctx.request_id == "r1"
    assert ctx.deadline == 12.5
    assert ctx.principal == "alice"
    assert ctx.headers == {"x-tenant": "acme"}
    assert ctx.trace is None
    assert ctx.annotations == {}


def test_contexts_do_not_share_mutable_state() -> None:
    a, b = CallContext.new("a"), CallContext.new("b")
    a.annotations["attempts"] = 2
    a.headers["x"] = "y"
    assert b.annotations == {}
    assert b.headers == {}


def test_a_valid_traceparent_is_parsed() -> None:
    ctx = CallContext.new("r", traceparent=f"00-{TRACE_ID}-{SPAN_ID}-01")
    assert ctx.trace == TraceIds(TRACE_ID, SPAN_ID, sampled=True)


@pytest.mark.parametrize(("flags", "sampled"), [("00", False), ("01", True), ("03", True)])
def test_the_sampled_flag_is_bit_zero(flags: str, sampled: bool) -> None:
    trace = TraceIds.from_traceparent(f"00-{TRACE_ID}-{SPAN_ID}-{flags}")
    assert trace.trace_id == TRACE_ID
    assert trace.parent_span_id == SPAN_ID
    assert trace.sampled is sampled


def test_surrounding_whitespace_is_tolerated() -> None:
    trace = TraceIds.from_traceparent(f"  00-{TRACE_ID}-{SPAN_ID}-01 ")
    assert trace == TraceIds(TRACE_ID, SPAN_ID, sampled=True)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        f"01-{TRACE_ID}-{SPAN_ID}-01",  # unknown version
        f"00-{TRACE_ID[:-1]}-{SPAN_ID}-01",  # trace id too short
        f"00-{TRACE_ID}0-{SPAN_ID}-01",  # trace id too long
        f"00-{TRACE_ID}-{SPAN_ID[:-1]}-01",  # span id too short
        f"00-{TRACE_ID}-{SPAN_ID}-1",  # flags one digit
        f"00-{TRACE_ID[:-1]}g-{SPAN_ID}-01",  # not hex
        f"00_{TRACE_ID}_{SPAN_ID}_01",  # wrong separator
        f"00-{'0' * 32}-{SPAN_ID}-01",  # all-zero trace id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero span id
        f"00-{TRACE_ID}-{SPAN_ID}-01-extra",
    ],
)
def test_an_invalid_traceparent_starts_a_new_trace(header: str) -> None:
    trace = TraceIds.from_traceparent(header)
    assert trace.trace_id != TRACE_ID
    assert HEX32.match(trace.trace_id)
    assert trace.trace_id != "0" * 32
    assert trace.parent_span_id is None
    assert trace.sampled is False


def test_a_missing_traceparent_starts_a_new_trace_each_time() -> None:
    first, second = TraceIds.from_traceparent(None), TraceIds.from_traceparent(None)
    assert first.trace_id != second.trace_id
    assert first.parent_span_id is None


def test_context_has_no_trace_without_traceparent_but_a_new_one_with_an_invalid_one() -> None:
    assert CallContext.new("r").trace is None
    trace = CallContext.new("r", traceparent="nonsense").trace
    assert trace is not None
    assert HEX32.match(trace.trace_id)
    assert trace.parent_span_id is None


def test_time_left_and_expired_against_the_deadline() -> None:
    ctx = CallContext.new("r", deadline=100.0)
    assert ctx.time_left(99.0) == 1.0
    assert not ctx.expired(99.0)
    assert ctx.time_left(100.0) == 0.0
    assert ctx.expired(100.0)  # the deadline itself is already too late
    assert ctx.time_left(102.5) == -2.5
    assert ctx.expired(102.5)


def test_no_deadline_never_expires() -> None:
    ctx = CallContext.new("r")
    assert ctx.deadline is None
    assert ctx.time_left(1e12) is None
    assert not ctx.expired(1e12)
