"""Notifications end to end (issue 15): the real notifier mails through the real Mailpit, read back through its
API; the inbox through the query service; marking read through the command service and the outbox.

Every mail is counted per recipient address (each test registers its own), and every count waits a few seconds
more after reaching its number (``Mailpit.wait_for``'s settle), so a duplicate that arrives late fails the test."""
from __future__ import annotations

import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from common import qr
from infra import stack
from projectors.notifier import Recorder
from tests.e2e.conftest import eventually, kafka_messages
from tests.mailpit import Mailpit

FREE = {"A": 0}


@pytest.fixture(scope="module")
def mailpit(settings) -> Mailpit:
    return Mailpit(settings)


def account(api, role: str = "buyer") -> tuple[str, str, str]:
    email = f"{role}-{uuid.uuid4().hex[:12]}@example.com"
    uid, token = api.user(role, email)
    return uid, token, email


def inbox(q, token: str, **params) -> dict:
    r = q.get("/api/v1/me/notifications", params=params, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return r.json()


def inbox_when(q, token: str, ready, timeout: float = 60.0) -> dict:
    """The inbox once ``ready(inbox)`` holds (the notifier records what the outbox says moments later)."""
    def probe():
        box = inbox(q, token)
        return box if ready(box) else None
    return eventually(probe, timeout=timeout)


def kinds(mailpit: Mailpit, mails: list[dict]) -> list[str]:
    return sorted(mailpit.headers(m["ID"])["X-Evently-Kind"][0] for m in mails)


def iso_in(seconds: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_paid_order_mails_one_confirmation_with_its_qr_codes_even_after_a_notifier_replay(
        api, settings, q, organizer, mailpit):
    since = int(time.time() * 1000) - 2000
    _, buyer, email = account(api)
    ev = api.event(organizer[1], rows=1, seats_per_row=4, ga=0, title=f"Quartet {uuid.uuid4().hex[:6]}")
    order = api.order(buyer, api.hold(buyer, ev["id"], ["A-1-1", "A-1-2"])["id"])  # paid at devpay
    assert order["status"] == "confirmed"

    [summary] = mailpit.wait_for(email, 1)
    mail = mailpit.message(summary["ID"])
    assert mail["Subject"] == f"Your tickets for {ev['title']}"
    assert "A-1-1" in mail["Text"] and "A-1-2" in mail["Text"] and order["id"] in mail["Text"]
    assert "100.00 EUR" in mail["Text"]  # the order's total, 2 x 5000 minor units
    # each ticket's QR code is attached, and is exactly what the API serves for that ticket (it encodes the code)
    tickets = q.get("/api/v1/me/tickets", params={"event_id": ev["id"]},
                    headers={"Authorization": f"Bearer {buyer}"}).json()["items"]
    assert len(tickets) == 2
    attached = {a["FileName"]: a for a in mail["Attachments"]}
    assert len(attached) == 2
    for t in tickets:
        [name] = [n for n in attached if n.startswith(f"ticket-{t['seat']}-")]
        part = httpx.get(f"{settings.mailpit_url}/api/v1/message/{summary['ID']}/part/{attached[name]['PartID']}")
        assert part.content == qr.png(t["code"])
    assert len(mail["Inline"]) == 2  # the HTML part shows them too
    assert 'src="cid:qr-' in mail["HTML"]

    # the same notification is in the inbox, with the mail's id
    box = inbox_when(q, buyer, lambda b: b["total"] >= 1)
    [n] = box["items"]
    assert (n["kind"], n["read_at"], box["unread"]) == ("order_confirmed", None, 1)
    assert n["title"] == mail["Subject"] and n["data"]["order"]["id"] == order["id"]
    assert mailpit.notification_id(summary["ID"]) == n["id"]
    assert mail["MessageID"] == f"{n['id']}@evently"

    # a replay: another notifier (its own consumer group) reads the event's messages again; nothing is re-sent
    raw = kafka_messages(settings, ev["id"], since)
    assert any(m.value() and b'"OrderConfirmed"' in m.value() for m in raw)
    replay = Recorder(settings, group=f"e2e-replay-{uuid.uuid4()}")
    try:
        replay.process(raw)
        replay.process(raw)
    finally:
        replay.consumer.close()
    assert len(mailpit.wait_for(email, 1, settle=5)) == 1
    assert inbox(q, buyer)["total"] == 1


def test_every_mail_of_a_burst_arrives_once_across_a_notifier_restart(api, organizer, mailpit):
    _, buyer, email = account(api)
    ev = api.event(organizer[1], rows=2, seats_per_row=10, ga=0, prices=FREE)
    orders = [api.order(buyer, api.hold(buyer, ev["id"], [f"A-{1 + i // 10}-{1 + i % 10}"])["id"])
              for i in range(16)]
    assert {o["status"] for o in orders} == {"confirmed"}
    stack.NOTIFIER.stop()  # mid-burst: some mails are out, some recorded and waiting, some not consumed yet
    stack.NOTIFIER.ensure()
    mails = mailpit.wait_for(email, 16, timeout=90, settle=5)
    ids = [mailpit.notification_id(m["ID"]) for m in mails]
    assert len(ids) == 16 and len(set(ids)) == 16, f"{len(ids)} mails for 16 orders"
    assert {m["Subject"] for m in mails} == {f"Your tickets for {ev['title']}"}


def test_every_mail_arrives_once_after_mailpit_was_down_for_30_seconds(api, organizer, mailpit):
    _, buyer, email = account(api)
    ev = api.event(organizer[1], rows=1, seats_per_row=10, ga=0, prices=FREE)
    stack.MAILPIT.stop()
    try:
        down_at = time.monotonic()
        for i in range(8):
            api.order(buyer, api.hold(buyer, ev["id"], [f"A-1-{i + 1}"])["id"])
        time.sleep(max(0.0, 30 - (time.monotonic() - down_at)))
    finally:
        stack.MAILPIT.ensure()
    mails = mailpit.wait_for(email, 8, timeout=120, settle=5)
    ids = {mailpit.notification_id(m["ID"]) for m in mails}
    assert len(mails) == 8 and len(ids) == 8


def test_a_waitlist_offer_mail_carries_its_deadline_and_the_expiry_follows(api, settings, pg, q, organizer,
                                                                          mailpit):
    ev = api.event(organizer[1], rows=1, seats_per_row=1, ga=0, prices=FREE)
    _, x, _ = account(api)
    _, a, email = account(api)
    order = api.order(x, api.hold(x, ev["id"], ["A-1-1"])["id"])
    entry = api.join_waitlist(a, ev["id"], 1)
    api.cancel_order(x, order["id"])  # the seat comes back: it is offered to A
    offered = eventually(lambda: next((n for n in inbox(q, a)["items"] if n["kind"] == "waitlist_offer"), None),
                         timeout=60)
    deadline = offered["data"]["offer"]["expires_at"]
    assert offered["data"]["entry"]["id"] == entry["id"]
    [summary] = mailpit.wait_for(email, 1, settle=0)
    mail = mailpit.message(summary["ID"])
    when = datetime.fromisoformat(deadline.replace("Z", "+00:00")).strftime("%a %d %b %Y, %H:%M UTC")
    assert when in mail["Subject"] and when in mail["Text"]
    assert offered["data"]["offer"]["hold_id"] in mail["Text"]

    pg.execute("UPDATE holds SET expires_at = now() WHERE id = %s", (offered["data"]["offer"]["hold_id"],))
    mails = mailpit.wait_for(email, 2, timeout=60)
    assert kinds(mailpit, mails) == ["offer_expired", "waitlist_offer"]
    expired = next(m for m in mails if m["ID"] != summary["ID"])
    assert "ran out" in mailpit.message(expired["ID"])["Text"]


def test_an_event_cancellation_mails_every_ticket_holder_once(api, organizer, mailpit):
    ev = api.event(organizer[1], rows=1, seats_per_row=10, ga=20, prices={"A": 0, "GA": 0})
    _, b1, e1 = account(api)
    _, b2, e2 = account(api)
    for seats in (["A-1-1"], ["A-1-2", "A-1-3"]):  # b1 has two orders
        api.order(b1, api.hold(b1, ev["id"], seats)["id"])
    api.order(b2, api.hold(b2, ev["id"], section="GA", quantity=3)["id"])
    api.cancel_event(organizer[1], ev["id"])
    assert kinds(mailpit, mailpit.wait_for(e1, 3)) == ["event_cancelled", "order_confirmed", "order_confirmed"]
    mails = mailpit.wait_for(e2, 2)
    assert kinds(mailpit, mails) == ["event_cancelled", "order_confirmed"]
    cancelled = next(m for m in mails if m["Subject"].endswith("is cancelled"))
    assert cancelled["Subject"] == f"{ev['title']} is cancelled"


def test_reminders_go_once_at_the_configured_time_under_concurrent_sweepers(api, settings, pg, q, organizer,
                                                                            mailpit):
    """The stack reminds 24 h before the start (EVENTLY_REMINDER_HOURS). An event 24 h + 20 s away is due in
    20 s; two more sweepers (the CLI) run next to the stack's own. One event is moved 20 s later before it is
    due: its holder hears of the change, and is reminded once, of the new time."""
    hours = settings.reminder_hours
    lead = hours * 3600
    (_, a, ea), (_, b, eb), (_, c, ec) = account(api), account(api), account(api)
    r = httpx.patch(f"{api.http.base_url}/api/v1/me/preferences", json={"reminders": False},
                    headers={"Authorization": f"Bearer {b}"})
    assert r.status_code == 200 and r.json() == {"reminders": False, "marketing": True}
    ev = api.event(organizer[1], rows=1, seats_per_row=4, ga=0, prices=FREE, starts_at=iso_in(lead + 20))
    moved = api.event(organizer[1], rows=1, seats_per_row=4, ga=0, prices=FREE, starts_at=iso_in(lead + 20))
    for token, event_id in ((a, ev["id"]), (b, ev["id"]), (c, moved["id"])):
        api.order(token, api.hold(token, event_id, ["A-1-1" if token != b else "A-1-2"])["id"])
    new_start = iso_in(lead + 40)
    api.call("PATCH", f"/api/v1/events/{moved['id']}", organizer[1], json={"starts_at": new_start})
    sweepers = [subprocess.Popen([sys.executable, "-m", "command_service.entrypoints.cli", "send-reminders",
                                  "--hours", str(hours), "--for-seconds", "45"], stdout=subprocess.PIPE)
                for _ in range(2)]
    try:
        # due when its start is `hours` away: from the start the API stored (iso_in drops the fraction of a second)
        due = datetime.fromisoformat(ev["starts_at"].replace("Z", "+00:00")) - timedelta(hours=hours)
        mails = mailpit.wait_for(ea, 2, timeout=90)
        assert kinds(mailpit, mails) == ["event_reminder", "order_confirmed"]
        reminder = next(n for n in inbox(q, a)["items"] if n["kind"] == "event_reminder")
        assert datetime.fromisoformat(reminder["created_at"].replace("Z", "+00:00")) >= due  # not before its time
        assert reminder["data"]["tickets"] == 1
        mails_c = mailpit.wait_for(ec, 3, timeout=90)
        assert kinds(mailpit, mails_c) == ["event_changed", "event_reminder", "order_confirmed"]
        reminded = next(m for m in mails_c if m["Subject"].startswith("Reminder"))
        when = datetime.fromisoformat(new_start.replace("Z", "+00:00")).strftime("%a %d %b %Y, %H:%M UTC")
        assert when in reminded["Subject"]
    finally:
        for p in sweepers:
            p.wait(90)
    assert [p.returncode for p in sweepers] == [0, 0]
    assert kinds(mailpit, mailpit.to(eb)) == ["order_confirmed"]  # b turned reminders off
    # at the source: one reminder message per holder and start time, whichever of the three sweepers sent it
    counts = pg.execute(
        "SELECT payload->'data'->>'event_id', payload->'data'->>'starts_at', count(*) FROM outbox "
        "WHERE payload->>'type' = 'HolderNotice' AND payload->'data'->>'notice' = 'reminder' "
        "AND payload->'data'->>'event_id' = ANY(%s) GROUP BY 1, 2", ([ev["id"], moved["id"]],)).fetchall()
    assert sorted(n for *_, n in counts) == [1, 1] and len(counts) == 2


def test_the_inbox_counts_unread_and_marks_read_through_the_command_side(api, q, organizer):
    _, buyer, _ = account(api)
    ev = api.event(organizer[1], rows=1, seats_per_row=4, ga=0, prices=FREE)
    for seat in ("A-1-1", "A-1-2", "A-1-3"):
        api.order(buyer, api.hold(buyer, ev["id"], [seat])["id"])
    box = inbox_when(q, buyer, lambda b: b["total"] == 3)
    assert box["unread"] == 3 and [n["read_at"] for n in box["items"]] == [None] * 3
    stamps = [n["created_at"] for n in box["items"]]
    assert stamps == sorted(stamps, reverse=True)  # newest first
    first = box["items"][0]["id"]
    api.call("POST", f"/api/v1/me/notifications/{first}/read", buyer, expect=204)
    box = inbox_when(q, buyer, lambda b: b["unread"] == 2)
    assert next(n for n in box["items"] if n["id"] == first)["read_at"] is not None
    unread = inbox(q, buyer, unread="true")
    assert unread["total"] == 2 and first not in {n["id"] for n in unread["items"]}
    # another user cannot mark mine read: it changes nothing of theirs or mine
    _, other, _ = account(api)
    api.call("POST", f"/api/v1/me/notifications/{box['items'][1]['id']}/read", other, expect=204)
    api.call("POST", "/api/v1/me/notifications/read-all", buyer, expect=204)
    box = inbox_when(q, buyer, lambda b: b["unread"] == 0)
    assert all(n["read_at"] for n in box["items"]) and box["total"] == 3
    assert inbox(q, buyer, unread="true")["total"] == 0
    # bad input is a 4xx
    api.call("POST", "/api/v1/me/notifications/not-a-uuid/read", buyer, expect=404)
    assert q.get("/api/v1/me/notifications", params={"unread": "maybe"},
                 headers={"Authorization": f"Bearer {buyer}"}).status_code == 400
    assert q.get("/api/v1/me/notifications").status_code == 401
    r = httpx.patch(f"{api.http.base_url}/api/v1/me/preferences", json={"reminders": "no"},
                    headers={"Authorization": f"Bearer {buyer}"})
    assert r.status_code == 400
    r = httpx.patch(f"{api.http.base_url}/api/v1/me/preferences", json={},
                    headers={"Authorization": f"Bearer {buyer}"})
    assert r.status_code == 400
