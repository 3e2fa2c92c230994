"""The store's errors hang under SeawallError with codes of their own."""

from __future__ import annotations

import seawall.errors as core_errors
from seawall.errors import SeawallError
from seawall.store.errors import StoreError, StoreUnavailableError


def test_the_tree_is_the_one_drawn() -> None:
    assert StoreError.__bases__ == (SeawallError,)
    assert StoreUnavailableError.__bases__ == (StoreError,)


def test_codes_are_distinct_from_every_core_code() -> None:
    core_codes = {getattr(core_errors, name).code for name in core_errors.__all__}
    assert {StoreError.code, StoreUnavailableError.code} == {"store_error", "store_unavailable"}
    assert not core_codes & {StoreError.code, StoreUnavailableError.code}


def test_the_message_is_the_string() -> None:
    error = StoreUnavailableError("database sqlite:///x.db: database is locked")
    assert str(error) == error.message == "database sqlite:///x.db: database is locked"
