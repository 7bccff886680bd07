"""Revisions at the intake: the claim of each revision, and the seals a newer one sets on older
ones.

Each revision of a response has its own claim (`revision_claim_key`): a second delivery of it is
a duplicate. An older revision than one already published is answered `superseded` by a seal
instead of a read: once a revision is in Kafka, it sets the seal of every older revision it can
name (`seals_below`), and the first delivery of an older revision then finds its seal set
(`ClaimStore.claim`). Reading the newest revision of each response instead would scan a
collection that grows with the campaign on FerretDB, for every webhook.

A seal names one revision, so the seals are bounded: revision 1 (the original, the one that
arrives late when a platform retries it after its edit) and, when the new revision is at most
`SEAL_ALL_BELOW`, every revision below it. Kobo numbers its edits by their times in seconds: an
older edit whose *first* delivery comes after a newer one's is published, like an older revision
that arrives while a newer one is being published. Analytics and the notifier order revisions
themselves, so neither lets it replace the newer one: `superseded` is an answer to the platform,
not what keeps the aggregates exact.
"""

from __future__ import annotations

SEAL_ALL_BELOW = 64


def revision_claim_key(identity: str, revision: int) -> str:
    """The claim of one revision of a response. Revision 1 keeps the key claims had before
    revisions existed, so a response accepted then is a duplicate of its revision 1."""
    return identity if revision == 1 else f"{identity}#r{revision}"


def seal_key(claim_key: str) -> str:
    """The seal of a revision's claim (`~` starts no identity: each begins with a survey id)."""
    return f"~{claim_key}"


def sealable(revision: int) -> bool:
    """Whether a newer revision ever seals `revision` (so whether its first delivery asks)."""
    return revision == 1 or revision < SEAL_ALL_BELOW


def seals_below(identity: str, revision: int) -> list[str]:
    """The seals a published `revision` of `identity` sets: those of the older revisions it
    can name (revision 1, and every one below when it is at most `SEAL_ALL_BELOW`)."""
    if revision <= 1:
        return []
    older = range(1, revision) if revision <= SEAL_ALL_BELOW else range(1, 2)
    return [seal_key(revision_claim_key(identity, number)) for number in older]
