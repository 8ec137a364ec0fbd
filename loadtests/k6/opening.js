// The flash-sale opening (issue 16): a crowd arrives in the minute before the sale opens and buys when it may.
//   .venv/bin/python loadtests/opening.py            (seeds the buyers, runs this twice: with and without the
//                                                     waiting room, checks PostgreSQL, prints the comparison)
// or by hand, with buyers from loadtests/seed_buyers.py:
//   .venv/bin/python -m infra.stack exec -- .venv/bin/k6 run -e BUYERS_FILE=/tmp/b.json -e WAITING_ROOM=1 \
//       loadtests/k6/opening.js
// setup() makes one free event (PRICE 0: orders are confirmed at checkout; the opening's contention is the point)
// of SEATS seated seats (rows of 100), max_per_buyer MAX (4), on sale at now + OPEN_IN s (60), with a waiting room
// (ADMIT_PER_MINUTE, ADMISSION_S) when WAITING_ROOM=1. Every buyer of BUYERS_FILE is one VU, one iteration:
// - it arrives at a random instant of the minute before opening; a share LATE (0.1) arrives in the 10 s after it;
// - with the waiting room: it joins (POST /events/{id}/queue), then polls its entry on the query service every
//   POLL_S (2) s until admitted, then buys; without: it waits for the opening (arriving late: at once) and buys;
// - buying: it wants 1-4 seats (the VU number decides), reads the seat map, holds that many random available
//   seats; on 409 SEATS_UNAVAILABLE it reads the map again and retries (at most TRIES, 8); SOLD_OUT or a map with
//   no seat left ends it; LIMIT_EXCEEDED never should (each buyer holds once, within its limit).
// Measured: hold_ms and checkout_ms (by outcome), waited_ms (opening -> the buyer's hold answered 201, for those
// who got seats), sold_at_ms (opening -> each checkout 201; the max is "sold out"), http_5xx (must be 0: a
// threshold), seats_sold. The fairness and the per-buyer totals are checked in PostgreSQL by opening.py.
import http from 'k6/http';
import { check, sleep } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import { SharedArray } from 'k6/data';
import { BASE, READ, account, auth, waitVisible } from './lib.js';

const buyers = new SharedArray('buyers', () => JSON.parse(open(__ENV.BUYERS_FILE)).buyers);
const SEATS = Number(__ENV.SEATS || 500);
const MAX = Number(__ENV.MAX || 4);
const OPEN_IN = Number(__ENV.OPEN_IN || 60);
const LATE = Number(__ENV.LATE || 0.1);
const ROOM = (__ENV.WAITING_ROOM || '1') === '1';
const ADMIT_PER_MINUTE = Number(__ENV.ADMIT_PER_MINUTE || 3000);
const ADMISSION_S = Number(__ENV.ADMISSION_S || 120);
const POLL_S = Number(__ENV.POLL_S || 2);
const TRIES = Number(__ENV.TRIES || 8);
const PER_ROW = 100;

const holdTime = new Trend('hold_ms', true);
const checkoutTime = new Trend('checkout_ms', true);
const waited = new Trend('waited_ms', true);
const soldAt = new Trend('sold_at_ms', true);
const http5xx = new Counter('http_5xx');
const seatsSold = new Counter('seats_sold');
const unexpected = new Counter('unexpected_answers');

export const options = {
  scenarios: {
    opening: { executor: 'per-vu-iterations', vus: buyers.length, iterations: 1,
      maxDuration: __ENV.DURATION || `${OPEN_IN + 240}s` },
  },
  setupTimeout: '120s',
  thresholds: { http_5xx: ['count==0'], unexpected_answers: ['count==0'] },
  summaryTrendStats: ['min', 'med', 'p(90)', 'p(99)', 'max', 'count'],
};

function counted(res) {
  if (res.status >= 500) http5xx.add(1);
  return res;
}

export function setup() {
  http5xx.add(0);
  unexpected.add(0);
  const organizer = account('organizer');
  const rows = [];
  for (let r = 1; r <= Math.ceil(SEATS / PER_ROW); r++) rows.push({ label: String(r), seats: Math.min(PER_ROW, SEATS - (r - 1) * PER_ROW) });
  const venue = http.post(`${BASE}/api/v1/venues`, JSON.stringify({ name: 'Opening Arena', city: 'Loadville',
    sections: [{ code: 'A', name: 'Floor', kind: 'seated', rows }] }), auth(organizer)).json();
  const opensAt = Date.now() + OPEN_IN * 1000;
  const body = { venue_id: venue.id, title: `Opening ${ROOM ? 'with' : 'without'} a waiting room ${Date.now()}`,
    category: 'loadtest', starts_at: '2030-01-01T20:00:00Z', currency: 'EUR', prices: { A: 0 },
    sale_starts_at: new Date(opensAt).toISOString(), max_per_buyer: MAX };
  if (ROOM) body.waiting_room = { admit_per_minute: ADMIT_PER_MINUTE, admission_seconds: ADMISSION_S };
  const event = http.post(`${BASE}/api/v1/events`, JSON.stringify(body), auth(organizer)).json();
  if (!event.id) throw new Error(`event: ${JSON.stringify(event)}`);
  if (http.post(`${BASE}/api/v1/events/${event.id}/publish`, null, auth(organizer)).status !== 200) {
    throw new Error('publish failed');
  }
  waitVisible(event.id);
  console.log(`EVENT ${event.id} opens at ${new Date(opensAt).toISOString()} (${ROOM ? 'waiting room' : 'no waiting room'})`);
  return { eventId: event.id, opensAt };
}

function availableSeats(eventId) {
  const res = counted(http.get(`${READ}/api/v1/events/${eventId}/seats`, { tags: { name: 'seatmap' } }));
  if (res.status !== 200) return null;
  return res.json().seats.filter((s) => s.status === 'available').map((s) => s.id);
}

function pick(list, n) {
  const out = [];
  const copy = list.slice();
  while (out.length < n && copy.length) out.push(copy.splice(Math.floor(Math.random() * copy.length), 1)[0]);
  return out;
}

function buy(data, token, want, admission) {
  for (let attempt = 0; attempt < TRIES; attempt++) {
    const free = availableSeats(data.eventId);
    if (free === null) { sleep(0.2); continue; }
    if (free.length === 0) return;
    const seats = pick(free, Math.min(want, free.length));
    const body = { seats, ...(admission ? { admission } : {}) };
    const t0 = Date.now();
    const hold = counted(http.post(`${BASE}/api/v1/events/${data.eventId}/holds`, JSON.stringify(body),
      { ...auth(token), tags: { name: 'hold' } }));
    const code = hold.status === 201 ? 'won' : ((hold.json() || {}).error || {}).code || String(hold.status);
    holdTime.add(Date.now() - t0, { outcome: code === 'won' ? 'won' : (hold.status < 500 ? 'refused' : 'error') });
    if (code === 'SEATS_UNAVAILABLE') continue;
    if (code === 'SOLD_OUT') return;
    if (code === 'EVENT_NOT_ON_SALE') { sleep(0.2); continue; }  // a clock a few ms ahead of the server's
    if (!check(hold, { 'hold 201 or a refusal of the race': () => hold.status === 201 })) {
      unexpected.add(1);
      console.warn(`hold ${hold.status}: ${hold.body}`);
      return;
    }
    waited.add(Date.now() - data.opensAt);
    const t1 = Date.now();
    const order = counted(http.post(`${BASE}/api/v1/orders`, JSON.stringify({ hold_id: hold.json().id }),
      { ...auth(token), tags: { name: 'checkout' } }));
    checkoutTime.add(Date.now() - t1);
    if (check(order, { 'checkout 201 confirmed': (r) => r.status === 201 && r.json().status === 'confirmed' })) {
      seatsSold.add(seats.length);
      soldAt.add(Date.now() - data.opensAt);
    } else {
      unexpected.add(1);
      console.warn(`checkout ${order.status}: ${order.body}`);
    }
    return;
  }
}

export default function (data) {
  const me = buyers[__VU - 1];
  const late = Math.random() < LATE;
  const arrive = late ? data.opensAt + Math.random() * 10000 : data.opensAt - (OPEN_IN - 3) * 1000 * Math.random();
  sleep(Math.max(0, arrive - Date.now()) / 1000);
  const want = 1 + (__VU % MAX);
  if (!ROOM) {
    sleep(Math.max(0, data.opensAt - Date.now()) / 1000);
    buy(data, me.token, want, null);
    return;
  }
  const joined = counted(http.post(`${BASE}/api/v1/events/${data.eventId}/queue`, null,
    { ...auth(me.token), tags: { name: 'join' } }));
  if (!check(joined, { 'joined 201': (r) => r.status === 201 })) { unexpected.add(1); return; }
  let entry = joined.json();
  const deadline = data.opensAt + (OPEN_IN + 200) * 1000;
  while (entry.status !== 'admitted' && Date.now() < deadline) {
    sleep(POLL_S * (0.5 + Math.random()));
    const res = counted(http.get(`${READ}/api/v1/events/${data.eventId}/queue/${entry.id}`,
      { ...auth(me.token), tags: { name: 'position' } }));
    if (res.status === 200) entry = res.json();
    else if (res.status !== 503) { unexpected.add(1); return; }
    if (entry.status !== 'admitted' && Date.now() > data.opensAt) {  // sold out while waiting: go home
      const ev = http.get(`${READ}/api/v1/events/${data.eventId}`, { tags: { name: 'detail' } });
      if (ev.status === 200 && ev.json().available === 0) return;
    }
  }
  if (entry.status === 'admitted') buy(data, me.token, want, entry.admission.token);
}
