"""Admin CLI: ``python -m command_service.entrypoints.cli <command>``.

* ``create-admin --email ... --password ...``: admins are created here only, never through the API;
* ``rotate-event-key --event <id>``: the event's next ticket-signing key becomes active (new tickets are signed
  with it; tickets signed before keep verifying with theirs; door devices fetch the check-in key again);
* ``rotate-ticket-secrets``: re-encrypt every event's signing key with the first of EVENTLY_TICKET_KEY_SECRETS
  (after putting a new secret first; the old one can be dropped once this has run);
* ``send-reminders [--hours H] [--for-seconds S]``: what every command-service sweeper does each round, by hand:
  remind the ticket holders of events due a reminder (service_layer/notices.py), repeating for S seconds. Safe
  next to running sweepers (the tests run two at once).
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time

from psycopg_pool import AsyncConnectionPool

from common.settings import get_settings
from command_service.adapters.ticket_keys import TicketKeys
from command_service.domain import commands, errors
from command_service.service_layer import handlers, notices
from command_service.service_layer.unit_of_work import UnitOfWork


async def create_admin(email: str, password: str, name: str) -> str:
    s = get_settings()
    # Same bounds as registration (email shape, password length), minus the role.
    cmd = commands.parse(commands.Register, {"email": email, "password": password, "name": name, "role": "buyer"})
    async with AsyncConnectionPool(s.database_url, min_size=1, max_size=1) as pool:
        user = await handlers.add_user(lambda: UnitOfWork(pool), cmd.email, cmd.password, cmd.name, "admin")
    return user.id


async def rotate_event_key(event_id: str) -> int:
    s = get_settings()
    keys = TicketKeys(s.ticket_key_secrets)
    key, public = keys.new_key()
    async with AsyncConnectionPool(s.database_url, min_size=1, max_size=1) as pool:
        async with UnitOfWork(pool) as uow:
            if await uow.repo.event_organizer(event_id) is None:
                raise errors.NotFound("no such event")
            key_id = await uow.repo.rotate_event_key(event_id, public, keys.seal(key))
            await uow.commit()
    return key_id


async def rotate_ticket_secrets() -> int:
    s = get_settings()
    keys = TicketKeys(s.ticket_key_secrets)
    async with AsyncConnectionPool(s.database_url, min_size=1, max_size=1) as pool:
        async with UnitOfWork(pool) as uow:
            rows = await uow.repo.all_event_keys()
            for r in rows:
                await uow.repo.reseal_event_key(str(r["event_id"]), r["key_id"], keys.box.rotate(bytes(r["private_key"])))
            await uow.commit()
    return len(rows)


async def send_reminders(hours: float, for_seconds: float) -> int:
    async with AsyncConnectionPool(get_settings().database_url, min_size=1, max_size=1) as pool:
        reminded, deadline = 0, time.monotonic() + for_seconds
        while True:
            reminded += await notices.send_due_reminders(lambda: UnitOfWork(pool), hours)
            if time.monotonic() >= deadline:
                return reminded
            await asyncio.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m command_service.entrypoints.cli")
    sub = p.add_subparsers(dest="command", required=True)
    admin = sub.add_parser("create-admin", help="create an admin account")
    admin.add_argument("--email", required=True)
    admin.add_argument("--password", required=True)
    admin.add_argument("--name", default="Administrator")
    rotate = sub.add_parser("rotate-event-key", help="make an event's next ticket-signing key the active one")
    rotate.add_argument("--event", required=True)
    sub.add_parser("rotate-ticket-secrets", help="re-encrypt every signing key with the first ticket-key secret")
    remind = sub.add_parser("send-reminders", help="remind the ticket holders of events due a reminder")
    remind.add_argument("--hours", type=float, default=get_settings().reminder_hours,
                        help="how long before the start (default EVENTLY_REMINDER_HOURS)")
    remind.add_argument("--for-seconds", type=float, default=0.0, help="keep sweeping this long (default: once)")
    args = p.parse_args(argv)
    try:
        if args.command == "create-admin":
            print(asyncio.run(create_admin(args.email, args.password, args.name)))
        elif args.command == "send-reminders":
            print(f"{asyncio.run(send_reminders(args.hours, args.for_seconds))} events reminded")
        elif args.command == "rotate-event-key":
            print(f"event {args.event}: key {asyncio.run(rotate_event_key(args.event))} is active")
        else:
            print(f"{asyncio.run(rotate_ticket_secrets())} signing keys re-encrypted")
    except errors.DomainError as exc:
        print(f"error: {exc.message} {exc.details}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
