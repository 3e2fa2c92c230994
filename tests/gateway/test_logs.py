"""Structured logs: one JSON object per line, and the handlers `configure_logging` installs."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from seawall.gateway.logs import JsonFormatter, configure_logging

CONFIGURED = ("seawall", "uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """`configure_logging` changes process-wide loggers: put them back after each test."""
    saved = {
        name: (
            list(logger.handlers),
            logger.level,
            logger.propagate,
            logger.disabled,
        )
        for name in CONFIGURED
        for logger in [logging.getLogger(name)]
    }
    yield
    for name, (handlers, level, propagate, disabled) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
        logger.disabled = disabled


def _record(
    msg: str = "model %s loaded",
    args: tuple[object, ...] = ("iris",),
    level: int = logging.INFO,
    exc_info: logging._SysExcInfoType | None = None,
    **extra: object,
) -> logging.LogRecord:
    logger = logging.getLogger("seawall.models")
    record = logger.makeRecord(logger.name, level, "f.py", 1, msg, args, exc_info, extra=extra)
    record.created = 0.25  # 1970-01-01T00:00:00.250 UTC
    return record


def test_a_record_is_one_json_object_with_its_fields_and_extras() -> None:
    line = JsonFormatter().format(_record(model="iris", load_seconds=0.5))
    assert "\n" not in line
    assert orjson.loads(line) == {
        "ts": "1970-01-01T00:00:00.250+00:00",
        "level": "info",
        "logger": "seawall.models",
        "msg": "model iris loaded",
        "model": "iris",
        "load_seconds": 0.5,
    }


def test_levels_are_lower_case() -> None:
    line = JsonFormatter().format(_record(level=logging.WARNING))
    assert orjson.loads(line)["level"] == "warning"


def test_exception_text_goes_under_exc_on_the_same_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record(msg="failed", args=(), level=logging.ERROR, exc_info=sys.exc_info())
    line = JsonFormatter().format(record)
    assert "\n" not in line
    document = orjson.loads(line)
    assert document["msg"] == "failed"
    assert document["exc"].startswith("Traceback (most recent call last):")
    assert document["exc"].endswith("ValueError: boom")


def test_uvicorn_color_message_and_private_attributes_are_dropped() -> None:
    record = _record(color_message="\x1b[32mmodel iris loaded\x1b[0m", _internal=1)
    document = orjson.loads(JsonFormatter().format(record))
    assert "color_message" not in document
    assert "_internal" not in document
    assert set(document) == {"ts", "level", "logger", "msg"}


def test_values_json_cannot_hold_are_written_as_text() -> None:
    document = orjson.loads(JsonFormatter().format(_record(path=Path("/m/iris.onnx"))))
    assert document["path"] == "/m/iris.onnx"


def test_configure_logging_json_writes_json_lines_to_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("warning", "json")
    log = logging.getLogger("seawall.gateway")
    log.info("not written: below the level")
    log.warning("queue full", extra={"model": "iris"})
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    document = orjson.loads(lines[0])
    assert (document["level"], document["logger"], document["msg"]) == (
        "warning",
        "seawall.gateway",
        "queue full",
    )
    assert document["model"] == "iris"


def test_configure_logging_sets_up_seawall_and_uvicorn_once() -> None:
    configure_logging("debug", "json")
    handlers = [
        logging.getLogger(name).handlers for name in ("seawall", "uvicorn", "uvicorn.error")
    ]
    assert all(len(h) == 1 and isinstance(h[0].formatter, JsonFormatter) for h in handlers)
    for name in ("seawall", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        assert (logger.level, logger.propagate) == (logging.DEBUG, False)
    assert logging.getLogger("uvicorn.access").disabled
    configure_logging("debug", "json")  # again: replaces the handler, never adds a second
    assert len(logging.getLogger("seawall").handlers) == 1


def test_configure_logging_text_writes_readable_lines_with_extras(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info", "text")
    logging.getLogger("seawall.models").info("model %s loaded", "iris", extra={"version": "1"})
    logging.getLogger("seawall.models").info("plain")
    first, second = capsys.readouterr().err.splitlines()
    assert first.endswith(" INFO seawall.models: model iris loaded {'version': '1'}")
    assert second.endswith(" INFO seawall.models: plain")
