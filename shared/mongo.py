"""The MongoDB helper: one client factory for every service (PyMongo's asyncio API)."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]


def new_client(url: str, **options: Any) -> AsyncMongoClient[Document]:
    """A client with UTC-aware datetimes and short server selection, so a dead server fails fast;
    `options` go to PyMongo (`event_listeners`, ...)."""
    return AsyncMongoClient(
        url, tz_aware=True, serverSelectionTimeoutMS=5000, connect=False, **options
    )


def database(client: AsyncMongoClient[Document], name: str) -> AsyncDatabase[Document]:
    """The service's database."""
    return client.get_database(name)


async def ping(client: AsyncMongoClient[Document]) -> None:
    """Raise unless the server answers."""
    await client.admin.command("ping")
