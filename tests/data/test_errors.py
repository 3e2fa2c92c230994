"""The data guard's errors sit in seawall's tree where the CLI and the API expect them."""

from __future__ import annotations

from seawall.data import errors
from seawall.errors import ConfigError, InvalidInputError, SeawallError


def test_a_bad_contract_is_a_config_error_with_its_problems() -> None:
    error = errors.ContractError("c.yaml: 1 problem(s)", ["columns.x.max: not a number"])

    assert isinstance(error, ConfigError)
    assert error.problems == ["columns.x.max: not a number"]
    assert error.code == "contract_error"


def test_an_unreadable_source_is_bad_input_naming_the_source() -> None:
    error = errors.SourceError("data.csv: empty file")

    assert isinstance(error, InvalidInputError)
    assert error.field == "source"
    assert str(error) == "source: data.csv: empty file"


def test_transient_and_corruption_errors_are_data_errors_not_bad_input() -> None:
    for error in (errors.SourceUnavailableError("refused"), errors.SnapshotCorruptError("x")):
        assert isinstance(error, errors.DataError)
        assert isinstance(error, SeawallError)
        assert not isinstance(error, InvalidInputError)
    assert errors.SourceUnavailableError.code == "source_unavailable"
    assert errors.SnapshotCorruptError.code == "snapshot_corrupt"


def test_a_corrupt_backup_is_a_backup_error_listing_its_problems() -> None:
    error = errors.BackupCorruptError("backup b: 2 problem(s)", ["a: missing", "b: truncated"])

    assert isinstance(error, errors.BackupError)
    assert isinstance(error, errors.DataError)
    assert not isinstance(error, InvalidInputError)
    assert error.problems == ["a: missing", "b: truncated"]
    assert (errors.BackupError.code, error.code) == ("backup_error", "backup_corrupt")
