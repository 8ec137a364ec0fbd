"""Old outbox rows are purged, and the purge is never shipped: the publication carries inserts and updates only."""
from __future__ import annotations

import pytest
from psycopg_pool import AsyncConnectionPool

from command_service.adapters import outbox as outbox_adapter
from tests.integration.conftest import outbox, seated

pytestmark = pytest.mark.integration


async def test_rows_older_than_the_retention_are_purged_and_recent_ones_kept(api, pg, organizer, settings):
    old = await api.on_sale_event(organizer[1], [seated("A", rows=1, seats=2)])
    new = await api.on_sale_event(organizer[1], [seated("A", rows=1, seats=2)])
    assert await outbox(pg, old["id"]) and await outbox(pg, new["id"])
    # (this UPDATE reaches Debezium as an outbox update, which the EventRouter skips with a warning)
    await pg.execute("UPDATE outbox SET created_at = now() - interval '2 hours' WHERE aggregateid = %s", (old["id"],))
    async with AsyncConnectionPool(settings.database_url, min_size=1, max_size=2, open=False) as pool:
        # batches of 2 rows: `old` has two (EventCreated, EventPublished), so the loop takes a second statement.
        # (The sweepers of running command services purge too, so the count is not asserted: the rows are.)
        await outbox_adapter.purge(pool, 3600, batch=2)
    assert await outbox(pg, old["id"]) == []
    assert [r["type"] for r in await outbox(pg, new["id"])] == ["EventCreated", "EventPublished"]


async def test_the_publication_ships_inserts_and_updates_of_the_outbox_and_heartbeat_only(pg):
    cur = await pg.execute("SELECT pubinsert, pubupdate, pubdelete, pubtruncate, puballtables FROM pg_publication "
                           "WHERE pubname = 'evently_outbox'")
    assert await cur.fetchone() == {"pubinsert": True, "pubupdate": True, "pubdelete": False, "pubtruncate": False,
                                    "puballtables": False}
    cur = await pg.execute("SELECT tablename FROM pg_publication_tables WHERE pubname = 'evently_outbox' ORDER BY 1")
    assert [r["tablename"] for r in await cur.fetchall()] == ["debezium_heartbeat", "outbox"]
