"""Test tooling, never served by the API: write N buyer accounts straight into PostgreSQL and mint their access
tokens, for load tests that need thousands of buyers (2,000 registrations through argon2 take minutes).

    .venv/bin/python -m infra.stack exec -- .venv/bin/python loadtests/seed_buyers.py --buyers 2000 --out /tmp/b.json

Each account is a real ``users`` row (role buyer) with an outbox ``UserRegistered`` (so the read side and the
notifier know its address), and a password hash no password matches (``!seeded``: the account cannot sign in;
its token is minted here with EVENTLY_JWT_SECRET, valid ``--ttl`` seconds). Writes ``{"buyers": [{id, email,
token}]}``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid

from psycopg_pool import AsyncConnectionPool

sys.path.insert(0, ".")
from common.auth import encode_token  # noqa: E402
from common.settings import Settings  # noqa: E402
from command_service.domain.events import UserRegistered  # noqa: E402
from command_service.domain.model import User  # noqa: E402
from command_service.service_layer.unit_of_work import UnitOfWork  # noqa: E402

UNUSABLE_HASH = "!seeded"  # argon2 verification of any password fails on it


async def seed(n: int, ttl: int, chunk: int = 500, role: str = "buyer") -> list[dict[str, str]]:
    s = Settings()
    run = uuid.uuid4().hex[:8]
    out: list[dict[str, str]] = []
    async with AsyncConnectionPool(s.database_url, min_size=1, max_size=2, kwargs={"autocommit": True}) as pool:
        for start in range(0, n, chunk):
            users = [User(str(uuid.uuid4()), f"seed-{run}-{i}@example.com", f"Seeded {role} {i}", role,
                          UNUSABLE_HASH) for i in range(start, min(n, start + chunk))]
            async with UnitOfWork(pool) as uow:
                for u in users:
                    if not await uow.repo.add_user(u):
                        raise RuntimeError(f"{u.email} exists")
                    uow.emit(UserRegistered.of(u))
                await uow.commit()
            out += [{"id": u.id, "email": u.email, "token": encode_token(u.id, role, s.jwt_secret, ttl)}
                    for u in users]
            print(f"  {len(out)}/{n} buyers", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--buyers", type=int, default=2000)
    ap.add_argument("--ttl", type=int, default=3600)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    t0 = time.monotonic()
    buyers = asyncio.run(seed(args.buyers, args.ttl))
    with open(args.out, "w") as f:
        json.dump({"buyers": buyers}, f)
    print(f"seeded {len(buyers)} buyers in {time.monotonic() - t0:.1f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
