"""Many inserts in one command, and what became of each: one round trip whatever their number
(each command has a sizeable fixed cost on FerretDB), each document still an insert of its own
unique `_id` (the one compare-and-set every supported server makes atomic)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from bson.errors import InvalidDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, WriteError

from shared.failures import Disposition, classify_write_error, unstorable
from shared.mongo import Document


@dataclass
class Inserted:
    """The positions of the documents not inserted: their `_id` was taken (`duplicates`), or
    the database refuses them for what they are (`refused`, the error as one insert raises it);
    every other one is stored."""

    duplicates: set[int] = field(default_factory=set)
    refused: dict[int, Exception] = field(default_factory=dict)


async def insert_each(
    collection: AsyncCollection[Document], documents: Sequence[Document]
) -> Inserted:
    """Insert `documents` in one unordered command. Raises when any failed for a reason that
    passes (the server away, a write-concern error): the caller tries them all again."""
    outcome = Inserted()
    sent: list[int] = []
    for position, document in enumerate(documents):
        why = unstorable(document)
        if why is None:
            sent.append(position)
        else:
            outcome.refused[position] = InvalidDocument(why)
    if not sent:
        return outcome
    try:
        await collection.insert_many([documents[p] for p in sent], ordered=False)
    except BulkWriteError as exc:
        if exc.details.get("writeConcernErrors"):
            raise
        for error in exc.details.get("writeErrors", []):
            position = sent[int(error["index"])]
            disposition = classify_write_error(error)
            if disposition is Disposition.RETRY:
                raise
            if disposition is Disposition.DUPLICATE:
                outcome.duplicates.add(position)
            else:
                outcome.refused[position] = WriteError(
                    str(error.get("errmsg")), error.get("code"), error
                )
    return outcome
