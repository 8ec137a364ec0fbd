"""The repository's per-connection prepared statements survive a session that lost them."""
from __future__ import annotations

import uuid

import pytest
from psycopg_pool import AsyncConnectionPool

from command_service.service_layer.unit_of_work import TransientConflict, UnitOfWork

pytestmark = pytest.mark.integration


async def test_lost_prepared_statements_are_prepared_again(settings, migrated):
    async with AsyncConnectionPool(settings.database_url, min_size=1, max_size=1, open=False) as pool:
        missing = str(uuid.uuid4())
        async with UnitOfWork(pool) as uow:  # first batch on the connection: PREPAREs + EXECUTE
            assert await uow.repo.sale_info(missing) is None
        async with pool.connection() as conn:  # the same (only) connection loses them
            await conn.execute("DEALLOCATE ALL")
        with pytest.raises(TransientConflict):  # the handler would be run again by the message bus
            async with UnitOfWork(pool) as uow:
                await uow.repo.sale_info(missing)
        async with UnitOfWork(pool) as uow:  # ... and the retry prepares them again
            assert await uow.repo.sale_info(missing) is None
            await uow.commit()
