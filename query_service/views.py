"""Read-side views: plain functions that turn read-model documents into API shapes."""
from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase


# Projector bookkeeping (projectors/README.md): never part of an API response.
BOOKKEEPING = {"created_by_event": 0, "wm": 0, "cv": 0}


async def event_detail(db: AsyncDatabase, event_id: str) -> dict[str, Any] | None:
    doc = await db.events.find_one({"_id": event_id}, BOOKKEEPING)
    if doc is None:
        return None
    doc["id"] = doc.pop("_id")
    return doc
