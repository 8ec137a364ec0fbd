"""The waitlist rules, pure: who gets the inventory that just came back, and which of it.

- FIFO by ticket (``seq``): ``entries`` come in queue order and nobody behind jumps the head of a scope.
- General admission: an entry is offered its whole quantity from its section when that many places are free;
  otherwise that section's queue waits (the entries behind it in the same section get nothing).
- Seated: an entry takes the freed seats in its scope (its section, or any seated section), at most what it still
  lacks (``quantity`` minus what its pending offer already gathered). What it takes is gone for those behind.
- Seats nobody in line wants stay on general sale.

The handler (service_layer/waitlist.py) turns each claim into a real hold inside the transaction that returned
the inventory; an offer starts (TTL, WaitlistOffered) once its entry has all it asked for.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from command_service.domain.model import Layout, WaitlistEntry


@dataclass(frozen=True)
class Claim:
    entry: WaitlistEntry
    seats: tuple[str, ...] = ()    # seated: the seats it takes now
    ga_section: str | None = None  # general admission: its whole quantity, from this section


def plan_offers(entries: Iterable[WaitlistEntry], layout: Layout, free_seats: Iterable[str],
                free_ga: Mapping[str, int], gathered: Callable[[WaitlistEntry], int] = lambda e: 0) -> list[Claim]:
    """The claims, in queue order, on ``free_seats`` (seat ids just made available) and ``free_ga`` (section code
    -> places now free). ``gathered(entry)``: seats its pending offer already holds."""
    seats = list(free_seats)
    ga = {code: n for code, n in free_ga.items() if n > 0}
    blocked: set[str] = set()
    claims: list[Claim] = []
    for e in entries:
        section = layout.section(e.section) if e.section else None
        if section is not None and section.kind == "ga":
            if e.section not in ga or e.section in blocked:
                continue
            if ga[e.section] < e.quantity:
                blocked.add(e.section)  # the head does not fit: its section's queue waits
                continue
            ga[e.section] -= e.quantity
            claims.append(Claim(e, ga_section=e.section))
        else:
            mine = [s for s in seats if e.section is None or s.split("-", 1)[0] == e.section]
            take = mine[:max(e.quantity - gathered(e), 0)]
            if not take:
                continue
            taken = set(take)
            seats = [s for s in seats if s not in taken]
            claims.append(Claim(e, seats=tuple(take)))
    return claims
