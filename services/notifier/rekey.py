"""`python -m services.notifier rekey`: move records kept under an address to its keyed hash.

Before `shared.personal`, the notifier keyed a focal point by its lower-cased address: the
registry `_id`, the `email_key` of deliveries and link ids, delivery ids `<pilot>|<address>` and
the match index. After an upgrade those records would be out of reach of erasure requests (which
name the keyed hash) and would keep the address in keys. This moves each to the keyed hash:

- a registry record is copied under the key (when a newer record is already there, the newer
  stays and only an unsubscribe of the old one is carried over) and copied into the match index;
  the address's own entries leave the index;
- a delivery is copied to `<pilot>|<key>` with its state, and its claims go (a claim decides only
  the attempt it names, and a copy starts with none taken);
- a link id keeps its id (links already sent keep working) and names the key.

Run it once, with every notifier stopped (it writes the match index without claiming its
versions), before the upgraded notifiers start; it is idempotent, so an interrupted run is run
again. Records already keyed by the hash are left alone.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.notifier.claims import CLAIMS
from services.notifier.deliveries import DELIVERIES, delivery_id
from services.notifier.matching import decode_bucket, encode_bucket
from services.notifier.registry import FOCAL_POINTS, LINK_IDS, MATCH_INDEX, Registry, record_of
from shared.mongo import Document
from shared.personal import EmailKeys

# An address as a key: keyed hashes (base64url) never hold "@".
BY_ADDRESS: dict[str, Any] = {"$regex": "@"}


def merged(old: Document, current: Document | None, key: str) -> Document:
    """The record to keep under `key`: the old one moved, or the current one with the old
    one's unsubscribe carried over (an unsubscribe is never lost)."""
    if current is None:
        return {**old, "_id": key}
    kept = dict(current)
    if old.get("unsubscribed") and not kept.get("unsubscribed"):
        kept["unsubscribed"] = True
        kept["unsubscribed_at"] = old.get("unsubscribed_at")
        kept["revision"] = int(kept.get("revision", 0)) + 1
    return kept


async def rekey(
    db: AsyncDatabase[Document], keys: EmailKeys, *, require_confirmation: bool = True
) -> Counter[str]:
    """Move every record keyed by an address to the keyed hash; how many of each kind.
    `require_confirmation`: the notifiers' `DOUBLE_OPT_IN` (the match index holds only the
    people pilots may go to)."""
    moved: Counter[str] = Counter()
    registry = Registry(db, keys, require_confirmation=require_confirmation)
    focal_points = db[FOCAL_POINTS]
    async for old in focal_points.find({"_id": BY_ADDRESS}):
        key = keys.key(str(old["_id"]))
        record = merged(old, await focal_points.find_one({"_id": key}), key)
        await focal_points.replace_one({"_id": key}, record, upsert=True)
        await focal_points.delete_one({"_id": old["_id"]})
        # The merged document is stored as it is (fields this version does not read stay);
        # the index gets the typed record read from it, as after any other change.
        await registry.reindex(record_of(record))
        moved["focal_points"] += 1
    async for bucket in db[MATCH_INDEX].find({}):
        entries = decode_bucket(bucket["data"]) if bucket.get("data") else {}
        kept = {email_key: e for email_key, e in entries.items() if "@" not in email_key}
        if len(kept) < len(entries):
            data = encode_bucket(kept)
            await db[MATCH_INDEX].update_one({"_id": bucket["_id"]}, {"$set": {"data": data}})
            moved["index_entries"] += len(entries) - len(kept)
    deliveries = db[DELIVERIES]
    async for delivery in deliveries.find({"email_key": BY_ADDRESS}):
        key = keys.key(str(delivery["email_key"]))
        copy = {**delivery, "_id": delivery_id(delivery["pilot_id"], key), "email_key": key}
        with contextlib.suppress(DuplicateKeyError):  # moved before an interruption
            await deliveries.insert_one(copy)
        attempts = range(1, int(delivery.get("attempts", 0)) + 2)
        await db[CLAIMS].delete_many({"_id": {"$in": [f"{delivery['_id']}#{n}" for n in attempts]}})
        await deliveries.delete_one({"_id": delivery["_id"]})
        moved["deliveries"] += 1
    async for link in db[LINK_IDS].find({"email_key": BY_ADDRESS}):
        key = keys.key(str(link["email_key"]))
        await db[LINK_IDS].update_one({"_id": link["_id"]}, {"$set": {"email_key": key}})
        moved["link_ids"] += 1
    return moved
