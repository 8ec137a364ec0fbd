"""The seat-id grammar (CONTRACT "Common rules"): ``<section code>-<row label>-<seat number>``, e.g. ``A-1-7``.

Section codes and row labels are 1-10 ASCII letters or digits (no ``-``: it separates the parts); seat numbers
count from 1 and have at most 5 digits, written without leading zeros (``A-1-07`` is not a seat id: one seat,
one spelling, so a lock, a database row and a read-model entry always agree on its name).
The one parser for the command side (validation) and the projectors (a venue's EventCreated lists every seat,
so this runs once per seat: one compiled-regex match is the cheap way).
"""
from __future__ import annotations

import re
from typing import NamedTuple

CODE_PATTERN = r"^[A-Za-z0-9]{1,10}$"  # a section code or row label, alone (JSON Schema / pydantic pattern)
MAX_SEAT_NUMBER_DIGITS = 5
SEAT_ID = re.compile(r"([A-Za-z0-9]{1,10})-([A-Za-z0-9]{1,10})-([1-9][0-9]{0,4})", re.ASCII)
SEAT_ID_PATTERN = "^" + SEAT_ID.pattern + "$"


class SeatParts(NamedTuple):
    section: str
    row: str
    number: int


def parse(seat_id: object) -> SeatParts | None:
    """The parts of a seat id, or None when ``seat_id`` is not one."""
    m = SEAT_ID.fullmatch(seat_id) if isinstance(seat_id, str) else None
    if m is None:
        return None
    return SeatParts(m[1], m[2], int(m[3]))


def format(section: str, row: str, number: int) -> str:  # noqa: A001 - the grammar's other direction
    return f"{section}-{row}-{number}"
