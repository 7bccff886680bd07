"""Pure matching: which focal points a pilot is for, and why."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from shared.events import PilotAnnounced, SurveyResponse


def focal_point_codes(response: SurveyResponse) -> list[str]:
    """The codes a focal point is matched on: collaboration interests and development priorities."""
    return list(
        dict.fromkeys([*response.collaboration_interests, *response.development_priorities])
    )


def shared_codes(pilot: PilotAnnounced, codes: list[str], country: str) -> list[str]:
    """The codes that make `pilot` relevant to a focal point; empty when it does not match."""
    if pilot.eligible_countries and country not in pilot.eligible_countries:
        return []
    return [code for code in codes if code in pilot.codes]


def candidates_query(pilot: PilotAnnounced) -> dict[str, Any]:
    """MongoDB filter of the focal points `pilot` matches (indexed on `codes`)."""
    query: dict[str, Any] = {
        "codes": {"$in": sorted(pilot.codes)},
        "consent": True,
        "unsubscribed": False,
    }
    if pilot.eligible_countries:
        query["country"] = {"$in": pilot.eligible_countries}
    return query


# The match index: every focal point as one short line, packed into a few hundred bucket
# documents. A server that scans (FerretDB pays per document read) then reads a few hundred
# documents instead of one per focal point, and the match runs here over the lines. A bucket is
# stored zlib-compressed (a quarter of the bytes for the server to read and send); buckets
# written as text by earlier versions are still read, and rewritten compressed on their next
# change.
BUCKETS = 256
Bucket = str | bytes


@dataclass(frozen=True)
class IndexEntry:
    """What matching needs of one focal point; `codes` is empty when they get no mail."""

    email_key: str
    revision: int
    country: str
    codes: tuple[str, ...]


def bucket_of(email_key: str, buckets: int = BUCKETS) -> int:
    """The bucket an email key lives in (stable across processes and versions)."""
    return int.from_bytes(hashlib.sha256(email_key.encode()).digest()[:4], "big") % buckets


def encode_bucket(entries: dict[str, IndexEntry]) -> bytes:
    """One line per entry: key, revision, country and codes, tab-separated; compressed.

    Email keys, country codes and taxonomy codes never hold a tab, a space or a line break.
    """
    text = "\n".join(
        f"{e.email_key}\t{e.revision}\t{e.country}\t{' '.join(e.codes)}"
        for e in sorted(entries.values(), key=lambda e: e.email_key)
    )
    return zlib.compress(text.encode())


def bucket_text(data: Bucket) -> str:
    """The lines of a stored bucket (compressed, or text as earlier versions wrote it)."""
    return zlib.decompress(data).decode() if isinstance(data, bytes) else data


def decode_bucket(data: Bucket) -> dict[str, IndexEntry]:
    """The entries of a bucket, by email key."""
    entries: dict[str, IndexEntry] = {}
    for line in bucket_text(data).splitlines():
        email_key, revision, country, codes = line.split("\t")
        entries[email_key] = IndexEntry(email_key, int(revision), country, tuple(codes.split()))
    return entries


def match(pilot: PilotAnnounced, buckets: Iterable[Bucket]) -> list[tuple[str, list[str]]]:
    """(email key, shared codes) of every indexed focal point `pilot` matches."""
    wanted = pilot.codes
    countries = frozenset(pilot.eligible_countries)
    matched: list[tuple[str, list[str]]] = []
    for data in buckets:
        for line in bucket_text(data).splitlines():
            email_key, _, country, codes = line.split("\t")
            if countries and country not in countries:
                continue
            shared = [code for code in codes.split() if code in wanted]
            if shared:
                matched.append((email_key, shared))
    return matched
