"""A ticket's QR code (it encodes the ticket's signed ``code``, contracts/tickets.py), rendered with segno: the
query service serves it (``/me/tickets/{id}/qr.svg`` and ``.png``) and the notifier attaches it to the confirmation
mail (issue 15), so both draw the same code the same way."""
from __future__ import annotations

import io

import segno

ERROR_LEVEL = "m"  # 15% of the symbol may be damaged or dirty and it still scans (a phone screen, a crease)
BORDER = 4  # the quiet zone the QR standard asks for, in modules


def svg(code: str, scale: int = 4) -> bytes:
    out = io.BytesIO()
    segno.make(code, error=ERROR_LEVEL).save(out, kind="svg", scale=scale, border=BORDER, xmldecl=False,
                                            svgns=True, title="ticket")
    return out.getvalue()


def png(code: str, scale: int = 6) -> bytes:
    out = io.BytesIO()
    segno.make(code, error=ERROR_LEVEL).save(out, kind="png", scale=scale, border=BORDER)
    return out.getvalue()
