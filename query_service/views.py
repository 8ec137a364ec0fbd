"""Read-side views: plain functions that turn read-model documents into API shapes."""
from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase


async def event_detail(db: AsyncDatabase, event_id: str) -> dict[str, Any] | None:
    doc = await db.events.find_one({"_id": event_id}, {"created_by_event": 0})
    if doc is None:
        return None
    doc["id"] = doc.pop("_id")
    return doc
