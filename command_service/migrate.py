"""Apply the command-side schema migrations: ``python -m command_service.migrate``."""
from __future__ import annotations

import pathlib

from alembic import command
from alembic.config import Config

INI = pathlib.Path(__file__).with_name("alembic.ini")


def upgrade(revision: str = "head") -> None:
    command.upgrade(Config(str(INI)), revision)


if __name__ == "__main__":
    upgrade()
