"""Pure: which failures are a record's own (park it on the DLQ) and which pass (try again).

A consumer must never stop on one record, and must never park a valid record because the
database was away for a moment. The line between the two:

- the record itself is refused: BSON cannot encode it (`InvalidDocument`: a key with a NUL
  byte, a value of no BSON type; `OverflowError`: an integer over 64 bits), it is larger than
  a document may be (`DocumentTooLarge`), or the server refuses the document as such (a
  `WriteError` that is neither a duplicate key nor transient, e.g. FerretDB's `BadValue` for a
  key starting with `$` or a nested array). The same record would be refused on every attempt:
  it goes to the DLQ and the partition moves on;
- everything else passes: connection lost, timeouts, an election (`not primary`), FerretDB's
  SQLite `database is locked`, a write-concern error, and any failure not known to be the
  record's. The batch is read again; nothing is parked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

import bson
from bson.errors import InvalidDocument
from pymongo.errors import (
    BulkWriteError,
    DocumentTooLarge,
    DuplicateKeyError,
    OperationFailure,
    PyMongoError,
    WriteError,
)

DUPLICATE_KEY = 11000
# The largest document MongoDB and FerretDB store (`maxBsonObjectSize`).
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
# Server states that end by themselves: retried whatever the operation.
TRANSIENT_CODES = frozenset(
    {
        6,  # HostUnreachable
        7,  # HostNotFound
        13,  # Unauthorized: a credential being rotated, not the record
        24,  # LockTimeout
        50,  # MaxTimeMSExpired
        64,  # WriteConcernFailed
        89,  # NetworkTimeout
        91,  # ShutdownInProgress
        112,  # WriteConflict
        117,  # ConflictingOperationInProgress
        133,  # FailedToSatisfyReadPreference
        189,  # PrimarySteppedDown
        262,  # ExceededTimeLimit
        9001,  # SocketException
        10107,  # NotWritablePrimary
        11600,  # InterruptedAtShutdown
        11602,  # InterruptedDueToReplStateChange
        13435,  # NotPrimaryNoSecondaryOk
        13436,  # NotPrimaryOrSecondary
        14031,  # OutOfDiskSpace
    }
)
# Refusals of a document as such, when they come as a command error (findAndModify, update)
# rather than a write error: only these are the record's; other command errors pass.
REFUSAL_CODES = frozenset(
    {
        2,  # BadValue (FerretDB: keys with `$` or `.`, nested arrays)
        14,  # TypeMismatch
        22,  # InvalidBSON
        52,  # DollarPrefixedFieldName
        55,  # InvalidDBRef
        56,  # EmptyFieldName
        57,  # DottedFieldName
        121,  # DocumentValidationFailure
        10334,  # BSONObjectTooLarge
        17280,  # KeyTooLong
    }
)
TRANSIENT_WORDS = (
    "database is locked",  # FerretDB on SQLite while another writer holds the lock
    "sqlite_busy",
    "disk i/o error",  # SQLite's I/O errors and a full disk: the server's state, not the record
    "no space left",
    "not primary",
    "not master",
    "timed out",
    "timeout",
    "connection",
    "interrupted",
    "shutdown",
)


class Disposition(StrEnum):
    """What to do with a record whose write failed."""

    DUPLICATE = "duplicate"  # already stored: the store's idempotency decides what counts
    RETRY = "retry"  # not the record's fault: read the batch again, park nothing
    DEAD_LETTER = "dead-letter"  # the record's own: park it on the DLQ, go on with the rest


def is_transient(code: int | None, message: str, labels: Iterable[str] = ()) -> bool:
    """Whether a server error is a passing state of the server rather than about the data."""
    if code in TRANSIENT_CODES or "RetryableWriteError" in labels:
        return True
    lowered = message.lower()
    return any(word in lowered for word in TRANSIENT_WORDS)


def classify_write_error(error: Mapping[str, Any]) -> Disposition:
    """One entry of a bulk write's `writeErrors` (`code`, `errmsg`, maybe `errInfo`)."""
    code = error.get("code")
    if code == DUPLICATE_KEY:
        return Disposition.DUPLICATE
    if is_transient(code, str(error.get("errmsg", ""))):
        return Disposition.RETRY
    return Disposition.DEAD_LETTER


def classify(exc: BaseException) -> Disposition:
    """Any exception raised while storing one record (a bulk write is `classify_write_error`'s
    per entry; here a whole `BulkWriteError` is the record's only if every entry is)."""
    if isinstance(exc, InvalidDocument | DocumentTooLarge | OverflowError):
        return Disposition.DEAD_LETTER  # OverflowError: an integer BSON cannot carry
    if isinstance(exc, DuplicateKeyError):
        return Disposition.DUPLICATE
    if isinstance(exc, BulkWriteError):
        if exc.details.get("writeConcernErrors"):
            return Disposition.RETRY
        found = {classify_write_error(e) for e in exc.details.get("writeErrors", [])}
        return found.pop() if len(found) == 1 else Disposition.RETRY
    if isinstance(exc, PyMongoError) and exc.has_error_label("RetryableWriteError"):
        return Disposition.RETRY
    if isinstance(exc, WriteError):
        return classify_write_error({"code": exc.code, "errmsg": str(exc)})
    if isinstance(exc, OperationFailure):
        if exc.code in REFUSAL_CODES and not is_transient(exc.code, str(exc)):
            return Disposition.DEAD_LETTER
        return Disposition.RETRY
    return Disposition.RETRY  # connection errors, timeouts, and anything not known


def unstorable(document: Mapping[str, Any]) -> str | None:
    """Why BSON cannot carry `document` (checked here, before anything is sent), or None."""
    try:
        size = len(bson.encode(document))
    except (InvalidDocument, OverflowError) as exc:
        return f"not storable: {exc}"
    if size > MAX_DOCUMENT_BYTES:
        return f"not storable: {size} bytes, over the {MAX_DOCUMENT_BYTES} a document may have"
    return None
