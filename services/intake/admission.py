"""What the intake admits: only responses that every consumer can store and process. Pure.

A candidate response (what a platform adapter made of a delivery, or a line of an import) is
checked here before anything is published. Each refusal names the field path (`answers.q1.sub`,
`respondent.city`) and the rule it breaks, so that one 422 tells the sender everything to fix:

- `max-depth`: objects and lists nest at most `MAX_DEPTH` levels (the response is level 1);
  JSON serialisers give up at 255 levels, MongoDB at 100.
- `key-name`: object keys of 1 to `MAX_KEY_LENGTH` characters, without control characters
  (U+0000-U+001F) or `.`, not starting with `$`: BSON cannot hold NUL in a key, FerretDB cannot
  read back a collection with a tab or newline in a key, and servers refuse or misread `.`, `$`.
- `string-length`, `list-length`, `object-length`: at most `MAX_STRING_LENGTH` characters,
  `MAX_LIST_LENGTH` items, `MAX_OBJECT_LENGTH` keys.
- `nested-list`: no list directly inside a list (FerretDB stores no nested arrays).
- `int64-range`: integers fit in a signed 64-bit integer, BSON's largest.
- `finite-number`: no NaN or Infinity (JSON has neither; they would become `null`).
- `unicode`: no unpaired surrogate (`"\\ud800"` in JSON): UTF-8, hence Kafka and BSON, has none.
- `bidi-control`: no bidi embedding, override or isolate in names, cities and organisations:
  they make the displayed text read otherwise (spoofing in emails and on the dashboard).
- `date-window`: `submitted_at` from `EARLIEST_SUBMISSION` to now plus a tolerance: a date in
  the future would stay "the latest response" of its focal point for good.
- `event-size`: the event's JSON at most `MAX_EVENT_BYTES` (Kafka's default limit is 1 MB).

The event model (`shared.events`) then checks the fields themselves; its refusals carry pydantic's
error type as the rule (`missing`, `string-too-long`, `value-error`, ...). Text in names, cities
and organisations is normalised there (NFC, invisible characters stripped): see
`shared.events.normalise_name`.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import bson
from pydantic import ValidationError

from shared.events import BIDI_RUN_CONTROLS, SurveyResponse

MAX_DEPTH = 32
MAX_KEY_LENGTH = 1_000  # a Google Forms key is a whole question title
MAX_STRING_LENGTH = 100_000  # a long essay; the event size is the real bound
MAX_LIST_LENGTH = 1_000
MAX_OBJECT_LENGTH = 500
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
EARLIEST_SUBMISSION = datetime(2000, 1, 1, tzinfo=UTC)
DEFAULT_FUTURE_TOLERANCE = timedelta(minutes=5)
# Kafka's default `max.message.bytes` (and the producer's `max_request_size`) is 1 MiB for the
# whole record: the event stays well below it.
MAX_EVENT_BYTES = 900_000
# One 422 names this many refusals at most (a body of 1,000 bad keys is one mistake).
MAX_REFUSALS = 50
# The fields people read as names; bidi run controls are refused there.
NAME_FIELDS = (("respondent", "city"), ("respondent", "organization"), ("focal_point", "name"))
_SHOWN_KEY = 60


class Rule(StrEnum):
    """The admission rules, as named in a 422's `errors`."""

    MAX_DEPTH = "max-depth"
    KEY_NAME = "key-name"
    STRING_LENGTH = "string-length"
    LIST_LENGTH = "list-length"
    NESTED_LIST = "nested-list"
    OBJECT_LENGTH = "object-length"
    INT64_RANGE = "int64-range"
    FINITE_NUMBER = "finite-number"
    UNICODE = "unicode"
    BIDI_CONTROL = "bidi-control"
    DATE_WINDOW = "date-window"
    EVENT_SIZE = "event-size"
    STORABLE = "storable"


@dataclass(frozen=True)
class Refusal:
    """One reason a candidate is not admitted: the field path, the rule, a sentence."""

    field: str
    rule: str
    message: str

    def as_error(self) -> dict[str, str]:
        """As an entry of a problem document's `errors`."""
        return {"field": self.field, "rule": self.rule, "message": self.message}


class Refused(Exception):
    """The candidate is not admitted; `refusals` says why, field by field."""

    def __init__(self, refusals: list[Refusal]) -> None:
        super().__init__(f"{len(refusals)} field(s) refused")
        self.refusals = refusals

    @property
    def errors(self) -> list[dict[str, str]]:
        """The refusals as a problem document's `errors`."""
        return [refusal.as_error() for refusal in self.refusals]


@dataclass(frozen=True)
class Admitted:
    """An admitted response and its event as published: the JSON the size rule measured."""

    response: SurveyResponse
    encoded: bytes


@dataclass(frozen=True)
class Admission:
    """The admission rules with the deployment's tolerance for clocks running ahead."""

    future_tolerance: timedelta = DEFAULT_FUTURE_TOLERANCE

    def admit(self, candidate: Mapping[str, Any], now: datetime) -> SurveyResponse:
        """The candidate as a response event every consumer can store, or `Refused`."""
        return self.admit_encoded(candidate, now).response

    def admit_encoded(self, candidate: Mapping[str, Any], now: datetime) -> Admitted:
        """`admit`, with the event's JSON, encoded once for the checks and for publishing."""
        refusals, normalised = structure(candidate)
        refusals += name_refusals(candidate)
        refused_fields = {refusal.field for refusal in refusals}
        response: SurveyResponse | None = None
        encoded = b""
        try:
            response = SurveyResponse.model_validate(normalised)
        except ValidationError as exc:
            refusals += [
                refusal
                for refusal in validation_refusals(exc)
                if refusal.field not in refused_fields
            ]
        if response is not None and not refusals:
            refusals += date_refusals(response, now, self.future_tolerance)
            encoded = response.model_dump_json().encode()
            refusals += size_refusals(encoded)
        if refusals:
            raise Refused(refusals[:MAX_REFUSALS])
        assert response is not None
        return Admitted(response, encoded)


def shown(key: str) -> str:
    """A key as it appears in a field path: control and invisible characters as `\\uXXXX`
    escapes (a NUL or a surrogate cannot go into a JSON answer), long keys cut short."""
    escaped = "".join(
        f"\\u{ord(char):04x}" if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Cn") else char
        for char in key[:_SHOWN_KEY]
    )
    return escaped + ("..." if len(key) > _SHOWN_KEY else "")


def key_problem(key: str) -> str | None:
    """Why `key` cannot be a field name in every consumer's store, or None when it can."""
    if not key:
        return "a key must not be empty"
    if len(key) > MAX_KEY_LENGTH:
        return f"a key has at most {MAX_KEY_LENGTH} characters"
    if _CONTROL.search(key):
        # BSON cannot hold NUL in a key, and FerretDB stores the others (tab, newline, ...) but
        # then cannot read the collection back at all.
        return "a key must not contain NUL or another control character (U+0000-U+001F)"
    if "." in key:
        return "a key must not contain '.'"
    if key.startswith("$"):
        return "a key must not start with '$'"
    return None


_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f]")
# A field path as a chain of (parent, key) pairs, written out only for a refusal: building a
# string per value would cost more than checking it.
Path = tuple[Any, str] | None


def _written(path: Path) -> str:
    parts: list[str] = []
    while path is not None:
        path, key = path
        parts.append(shown(key))
    return ".".join(reversed(parts)) or "(body)"


def structure(candidate: Mapping[str, Any]) -> tuple[list[Refusal], dict[str, Any]]:
    """Refusals of the candidate's shape (depth, keys, lengths, numbers, Unicode) and a copy with
    every string value in NFC. Never descends below `MAX_DEPTH`, so any input is safe here."""
    refusals: list[Refusal] = []

    def refuse(path: Path, rule: Rule, message: str) -> None:
        if len(refusals) < MAX_REFUSALS:
            refusals.append(Refusal(_written(path), rule, message))

    def text(value: str, path: Path) -> str:
        if len(value) > MAX_STRING_LENGTH:
            refuse(path, Rule.STRING_LENGTH, f"text has at most {MAX_STRING_LENGTH} characters")
        elif _SURROGATE.search(value):
            refuse(path, Rule.UNICODE, "text holds an unpaired surrogate (invalid Unicode)")
        else:
            return unicodedata.normalize("NFC", value)
        return value

    def walk(value: Any, path: Path, depth: int) -> Any:
        kind = type(value)
        if kind is str:
            return text(value, path)
        if kind is int:
            if not INT64_MIN <= value <= INT64_MAX:
                refuse(path, Rule.INT64_RANGE, "an integer must fit in 64 bits (signed)")
            return value
        if kind is float:
            if not math.isfinite(value):
                refuse(path, Rule.FINITE_NUMBER, "a number must be finite (no NaN or Infinity)")
            return value
        if not isinstance(value, dict | list | tuple):
            return value  # None, booleans, the adapters' datetimes
        if depth > MAX_DEPTH:
            refuse(path, Rule.MAX_DEPTH, f"objects and lists nest at most {MAX_DEPTH} levels")
            return None
        if isinstance(value, dict):
            if len(value) > MAX_OBJECT_LENGTH:
                refuse(path, Rule.OBJECT_LENGTH, f"an object has at most {MAX_OBJECT_LENGTH} keys")
                return None
            copy: dict[Any, Any] = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    refuse(path, Rule.KEY_NAME, f"a key must be text, got {type(key).__name__}")
                elif _SURROGATE.search(key):
                    refuse((path, key), Rule.UNICODE, "a key holds an unpaired surrogate")
                elif (problem := key_problem(key)) is not None:
                    refuse((path, key), Rule.KEY_NAME, problem)
                else:
                    copy[key] = walk(item, (path, key), depth + 1)
            return copy
        if len(value) > MAX_LIST_LENGTH:
            refuse(path, Rule.LIST_LENGTH, f"a list has at most {MAX_LIST_LENGTH} items")
            return None
        items = []
        for index, item in enumerate(value):
            if isinstance(item, list | tuple):
                refuse((path, str(index)), Rule.NESTED_LIST, "a list must not hold a list")
            else:
                items.append(walk(item, (path, str(index)), depth + 1))
        return items

    normalised = walk(dict(candidate), None, 1)
    return refusals, normalised if isinstance(normalised, dict) else {}


def name_refusals(candidate: Mapping[str, Any]) -> list[Refusal]:
    """Bidi embeddings, overrides and isolates in names, cities and organisations.

    Refused rather than stripped: they change how the rest of the text reads, so stripping would
    change what the sender wrote, and no keyboard types them into a name. The invisible marks
    (LRM, RLM, ALM) and zero-width characters are stripped by the event model instead."""
    refusals = []
    for parent, child in NAME_FIELDS:
        section = candidate.get(parent)
        value = section.get(child) if isinstance(section, dict) else None
        if isinstance(value, str) and any(char in BIDI_RUN_CONTROLS for char in value):
            refusals.append(
                Refusal(
                    f"{parent}.{child}",
                    Rule.BIDI_CONTROL,
                    "bidi embedding, override and isolate characters (U+202A-U+202E, "
                    "U+2066-U+2069) are not allowed in names",
                )
            )
    return refusals


def validation_refusals(exc: ValidationError) -> list[Refusal]:
    """The event model's refusals; the rule is pydantic's error type (`string-too-long`, ...)."""
    return [
        Refusal(
            ".".join(shown(str(part)) for part in error["loc"]) or "(body)",
            error["type"].replace("_", "-"),
            error["msg"],
        )
        for error in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


def date_refusals(
    response: SurveyResponse, now: datetime, future_tolerance: timedelta
) -> list[Refusal]:
    """`submitted_at` must lie between `EARLIEST_SUBMISSION` and `now + future_tolerance`."""
    latest = now + future_tolerance
    if EARLIEST_SUBMISSION <= response.submitted_at <= latest:
        return []
    return [
        Refusal(
            "submitted_at",
            Rule.DATE_WINDOW,
            f"must lie between {EARLIEST_SUBMISSION:%Y-%m-%d} and "
            f"{int(future_tolerance.total_seconds())} s after the intake's clock "
            f"({latest:%Y-%m-%dT%H:%M:%SZ})",
        )
    ]


def size_refusals(encoded: bytes) -> list[Refusal]:
    """The event (`encoded`: its JSON) must fit in a Kafka message and in a MongoDB document."""
    size = len(encoded)
    if size > MAX_EVENT_BYTES:
        return [
            Refusal(
                "(body)",
                Rule.EVENT_SIZE,
                f"the response takes {size} bytes as an event; at most {MAX_EVENT_BYTES}",
            )
        ]
    try:
        # What analytics stores: the event as a document (its JSON decoded is what
        # `model_dump(mode="json")` gives). The rules above should make this impossible to fail.
        bson.encode(json.loads(encoded))
    except (bson.InvalidDocument, OverflowError, UnicodeError, ValueError) as exc:
        return [Refusal("(body)", Rule.STORABLE, f"cannot be stored: {exc}")]
    return []
