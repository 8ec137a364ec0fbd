"""Email: render a notification from its templates (jinja2) and send it over SMTP (aiosmtplib).

Templates live in ``projectors/templates/mail/``: one ``<kind>.txt`` per notification kind with three blocks,
``subject`` (also the inbox title), ``summary`` (the inbox body) and ``body`` (the mail's text, inside
``base.txt``). The HTML part is ``base.html`` around the same text, plus the tickets' QR codes inline (``cid:``)
for an order confirmation; the QR PNGs are also attached (common/qr.py draws them as the API serves them).

Every mail carries ``Message-ID: <notification id@evently>`` and ``X-Evently-Notification-Id``, the same on every
attempt: if the notifier dies between the server's accept and recording the mail sent, the next attempt is the
same message, which receiving systems can drop as a duplicate (projectors/README.md "Email").
"""
from __future__ import annotations

import ssl
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import formataddr, format_datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import aiosmtplib
import jinja2

from common import qr

ENV = jinja2.Environment(loader=jinja2.PackageLoader("projectors", "templates/mail"), undefined=jinja2.StrictUndefined,
                         autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
                         keep_trailing_newline=False)
REASONS = {"event_reminder": "reminders are on in your preferences", "waitlist_offer": "you joined a waitlist",
           "offer_expired": "you joined a waitlist", "event_changed": "you hold tickets for this event",
           "event_cancelled": "you had orders for this event"}


def _when(iso: str | None) -> str:
    if not iso:
        return ""
    ts = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return ts.strftime("%a %d %b %Y, %H:%M UTC")


def _money(amount: int | None, currency: str | None) -> str:
    if amount is None:
        return ""
    return f"{amount / 100:,.2f} {currency or ''}".strip()


def _places(order: dict[str, Any]) -> str:
    if order.get("seats"):
        seats = order["seats"]
        return f"seat{'s' if len(seats) > 1 else ''} {', '.join(seats)}"
    n = order.get("quantity") or 0
    return f"{n} place{'s' if n != 1 else ''} in section {order.get('section')}"


ENV.filters.update(when=_when, money=_money, places=_places)


@dataclass(frozen=True)
class Rendered:
    subject: str
    summary: str
    text: str
    html: str


def context(doc: dict[str, Any], name: str, links: dict[str, str]) -> dict[str, Any]:
    """What every template sees: the notification's ``data`` and ``event``, the recipient's name, its tickets."""
    return {"data": doc.get("data") or {}, "event": doc.get("event") or {"id": doc.get("event_id"), "title": "your event"},
            "tickets": doc.get("tickets") or [], "name": name or "there", "reason": REASONS.get(doc["kind"], "a purchase"),
            **links}


def _block(template: jinja2.Template, name: str, ctx: dict[str, Any]) -> str:
    return " ".join("".join(template.blocks[name](template.new_context(ctx))).split())


def inbox_text(doc: dict[str, Any], links: dict[str, str]) -> tuple[str, str]:
    """(title, body) of the inbox entry: the mail's subject and summary."""
    t = ENV.get_template(f"{doc['kind']}.txt")
    ctx = context(doc, "", links)
    return _block(t, "subject", ctx), _block(t, "summary", ctx)


def render(doc: dict[str, Any], name: str, links: dict[str, str]) -> Rendered:
    t = ENV.get_template(f"{doc['kind']}.txt")
    ctx = context(doc, name, links)
    subject, summary = _block(t, "subject", ctx), _block(t, "summary", ctx)
    text = t.render(ctx).strip() + "\n"
    body = "".join(t.blocks["body"](t.new_context(ctx))).strip()
    paragraphs = [p.splitlines() for p in body.split("\n\n") if p.strip()]
    tickets = [{**tk, "cid": f"qr-{tk['id']}"} for tk in ctx["tickets"]]
    html = ENV.get_template("base.html").render({**ctx, "subject": subject, "paragraphs": paragraphs,
                                                 "tickets": tickets})
    return Rendered(subject, summary, text, html)


def message(doc: dict[str, Any], to: str, name: str, sender: str, links: dict[str, str]) -> EmailMessage:
    """The whole mail of a notification document (the notifier's ``notifications`` collection)."""
    r = render(doc, name, links)
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = formataddr((name, to)) if name else to
    msg["Subject"] = r.subject
    msg["Message-ID"] = f"<{doc['_id']}@evently>"
    msg["Date"] = format_datetime(datetime.fromisoformat(doc["created_at"].replace("Z", "+00:00")))
    msg["X-Evently-Notification-Id"] = doc["_id"]
    msg["X-Evently-Kind"] = doc["kind"]
    msg.set_content(r.text)
    msg.add_alternative(r.html, subtype="html")
    tickets = doc.get("tickets") or []
    if tickets:
        html_part = msg.get_payload()[1]
        pngs = [qr.png(tk["code"]) for tk in tickets]  # ~12 ms each (pure Python): drawn once per mail
        for tk, png in zip(tickets, pngs):  # inline for the HTML part, and attached for every client
            html_part.add_related(png, maintype="image", subtype="png", cid=f"<qr-{tk['id']}>")
        for tk, png in zip(tickets, pngs):
            msg.add_attachment(png, maintype="image", subtype="png",
                               filename=f"ticket-{tk.get('seat') or tk.get('section')}-{tk['id'][:8]}.png")
    return msg


# --- SMTP ------------------------------------------------------------------------------------------------------
class PermanentFailure(Exception):
    """The server refused the mail for good (a 5xx reply): recorded as failed, never tried again."""


class SMTPSender:
    """One SMTP connection, opened lazily and reopened after a failure. ``EVENTLY_SMTP_URL``:
    ``smtp://[user:password@]host:port`` (STARTTLS when the server offers it) or ``smtps://`` (TLS)."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        u = urlsplit(url)
        if u.scheme not in ("smtp", "smtps"):
            raise ValueError(f"EVENTLY_SMTP_URL must be smtp:// or smtps://, not {url!r}")
        self.host, self.port = u.hostname or "127.0.0.1", u.port or (465 if u.scheme == "smtps" else 25)
        self.user, self.password = unquote(u.username or ""), unquote(u.password or "")
        self.tls = u.scheme == "smtps"
        self.timeout = timeout
        self.client: aiosmtplib.SMTP | None = None

    async def _connect(self) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(hostname=self.host, port=self.port, timeout=self.timeout, use_tls=self.tls,
                                 start_tls=None, tls_context=ssl.create_default_context() if self.tls else None)
        await client.connect()
        if self.user:
            await client.login(self.user, self.password)
        return client

    async def send(self, msg: EmailMessage) -> None:
        """Deliver ``msg``; PermanentFailure for a 5xx reply, any other exception is worth another try."""
        try:
            if self.client is None or not self.client.is_connected:
                self.client = await self._connect()
            await self.client.send_message(msg)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            if all(500 <= r.code < 600 for r in exc.recipients):
                raise PermanentFailure(f"recipient refused: {exc.recipients[0].code} {exc.recipients[0].message}")
            await self.close()
            raise
        except aiosmtplib.SMTPResponseException as exc:
            if 500 <= exc.code < 600:
                await self._reset()
                raise PermanentFailure(f"{exc.code} {exc.message}") from exc
            await self.close()
            raise
        except Exception:
            await self.close()
            raise

    async def _reset(self) -> None:
        """After a refused mail the connection is still good: RSET it for the next one."""
        try:
            if self.client is not None and self.client.is_connected:
                await self.client.rset()
        except Exception:  # noqa: BLE001
            await self.close()

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - already broken
                pass
