"""Admin CLI: ``python -m command_service.entrypoints.cli create-admin --email ... --password ...``.

Admins are created here only, never through the API.
"""
from __future__ import annotations

import argparse
import asyncio
import sys

from psycopg_pool import AsyncConnectionPool

from common.settings import get_settings
from command_service.domain import commands, errors
from command_service.service_layer import handlers
from command_service.service_layer.unit_of_work import UnitOfWork


async def create_admin(email: str, password: str, name: str) -> str:
    s = get_settings()
    # Same bounds as registration (email shape, password length), minus the role.
    cmd = commands.parse(commands.Register, {"email": email, "password": password, "name": name, "role": "buyer"})
    async with AsyncConnectionPool(s.database_url, min_size=1, max_size=1) as pool:
        user = await handlers.add_user(lambda: UnitOfWork(pool), cmd.email, cmd.password, cmd.name, "admin")
    return user.id


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m command_service.entrypoints.cli")
    sub = p.add_subparsers(dest="command", required=True)
    admin = sub.add_parser("create-admin", help="create an admin account")
    admin.add_argument("--email", required=True)
    admin.add_argument("--password", required=True)
    admin.add_argument("--name", default="Administrator")
    args = p.parse_args(argv)
    try:
        user_id = asyncio.run(create_admin(args.email, args.password, args.name))
    except errors.DomainError as exc:
        print(f"error: {exc.message} {exc.details}", file=sys.stderr)
        return 1
    print(user_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
