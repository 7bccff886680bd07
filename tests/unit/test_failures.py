"""shared.failures: which store failures park a record and which are retried."""

from __future__ import annotations

from typing import Any

import pytest
from bson.errors import InvalidDocument
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    ConnectionFailure,
    DocumentTooLarge,
    DuplicateKeyError,
    ExecutionTimeout,
    NetworkTimeout,
    NotPrimaryError,
    OperationFailure,
    ServerSelectionTimeoutError,
    WriteError,
)

from shared.failures import (
    MAX_DOCUMENT_BYTES,
    Disposition,
    classify,
    classify_write_error,
    unstorable,
)

DEAD, RETRY, DUPLICATE = Disposition.DEAD_LETTER, Disposition.RETRY, Disposition.DUPLICATE


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ({"code": 11000, "errmsg": "E11000 duplicate key"}, DUPLICATE),
        # FerretDB's refusals of the document itself (measured on 1.24).
        ({"code": 2, "errmsg": "invalid key: \"$where\" (key must not start with '$' sign)"}, DEAD),
        ({"code": 2, "errmsg": "invalid key: \"a.b\" (key must not contain '.' sign)"}, DEAD),
        ({"code": 2, "errmsg": "invalid value: (nested arrays are not supported)"}, DEAD),
        ({"code": 121, "errmsg": "Document failed validation"}, DEAD),
        ({"code": 10334, "errmsg": "BSONObj size is invalid"}, DEAD),
        ({"errmsg": "something about this document"}, DEAD),
        # Passing states of the server: never parked.
        ({"code": 1, "errmsg": "sqlite: database is locked (5) (SQLITE_BUSY)"}, RETRY),
        ({"code": 10107, "errmsg": "not primary"}, RETRY),
        ({"code": 11602, "errmsg": "operation was interrupted"}, RETRY),
        ({"code": 91, "errmsg": "The server is in quiesce mode and will shut down"}, RETRY),
        ({"code": 50, "errmsg": "operation exceeded time limit"}, RETRY),
        ({"code": 112, "errmsg": "WriteConflict"}, RETRY),
        ({"code": 14031, "errmsg": "disk full"}, RETRY),
        ({"code": 8, "errmsg": "connection reset by peer"}, RETRY),
        ({"code": 1, "errmsg": "sqlite: disk I/O error (SQLITE_IOERR)"}, RETRY),
    ],
)
def test_classify_write_error_each_kind(error: dict[str, Any], expected: Disposition) -> None:
    assert classify_write_error(error) is expected


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (InvalidDocument("Key names must not contain the NULL byte"), DEAD),
        (DocumentTooLarge("BSON document too large"), DEAD),
        (OverflowError("BSON can only handle up to 8-byte ints"), DEAD),
        (WriteError("invalid key", 2, {"code": 2}), DEAD),
        (OperationFailure("invalid key: '$x'", 52), DEAD),
        (OperationFailure("Document failed validation", 121), DEAD),
        (DuplicateKeyError("E11000", 11000), DUPLICATE),
        # Everything not known to be the record's is retried.
        (WriteError("database is locked", 1, {}), RETRY),
        (WriteError("not primary", 10107, {}), RETRY),
        (OperationFailure("no such command", 59), RETRY),
        (OperationFailure("not authorized", 13), RETRY),
        (OperationFailure("BadValue but database is locked", 2), RETRY),
        (
            OperationFailure("retry me", 2, {"errorLabels": ["RetryableWriteError"]}),
            RETRY,
        ),
        (AutoReconnect("connection closed"), RETRY),
        (ConnectionFailure("refused"), RETRY),
        (NetworkTimeout("timed out"), RETRY),
        (ServerSelectionTimeoutError("no servers"), RETRY),
        (NotPrimaryError("not primary", {}), RETRY),
        (ExecutionTimeout("time limit", 50), RETRY),
        (TimeoutError(), RETRY),
        (OSError("network unreachable"), RETRY),
        (RuntimeError("a bug"), RETRY),
    ],
)
def test_classify_exception_each_kind(exc: BaseException, expected: Disposition) -> None:
    assert classify(exc) is expected


def bulk(errors: list[dict[str, Any]], concern: list[dict[str, Any]] | None = None) -> Exception:
    return BulkWriteError(
        {"writeErrors": errors, "writeConcernErrors": concern or [], "nInserted": 0}
    )


def test_classify_bulk_error_parks_only_when_every_entry_is_the_record() -> None:
    refused = {"index": 0, "code": 2, "errmsg": "nested arrays are not supported"}
    locked = {"index": 1, "code": 1, "errmsg": "database is locked"}
    duplicate = {"index": 2, "code": 11000, "errmsg": "E11000"}

    assert classify(bulk([refused])) is DEAD
    assert classify(bulk([duplicate])) is DUPLICATE
    assert classify(bulk([refused, locked])) is RETRY
    assert classify(bulk([refused, duplicate])) is RETRY  # mixed: the batch decides, not here
    assert classify(bulk([refused], concern=[{"code": 64, "errmsg": "waiting"}])) is RETRY


@pytest.mark.parametrize(
    "document",
    [
        {"answers": {"a\x00b": 1}},
        {"answers": {"big": 2**64}},
        {"answers": {"deep": {"x\x00": [1]}}},
        {"blob": "x" * (MAX_DOCUMENT_BYTES + 1)},
    ],
)
def test_unstorable_finds_what_bson_cannot_carry(document: dict[str, Any]) -> None:
    reason = unstorable(document)

    assert reason is not None
    assert reason.startswith("not storable: ")


@pytest.mark.parametrize(
    "document",
    [
        {"answers": {"$where": 1, "a.b": [[1]], "text": "NUL in a value \x00 is fine"}},
        {"answers": {"big": 2**63 - 1}, "blob": "x" * 1000},
    ],
)
def test_unstorable_none_for_what_bson_carries(document: dict[str, Any]) -> None:
    assert unstorable(document) is None
