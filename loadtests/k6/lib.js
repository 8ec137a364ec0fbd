// Shared set-up for the k6 scenarios: accounts, a venue, an on-sale event.
import http from 'k6/http';
import { sleep } from 'k6';

export const BASE = __ENV.COMMAND_URL || 'http://127.0.0.1:8001';
export const READ = __ENV.QUERY_URL || 'http://127.0.0.1:8002';
// devpay, the stack's payment provider: its API key comes from the stack's environment (run k6 under
// `.venv/bin/python -m infra.stack exec --`, which sets EVENTLY_DEVPAY_API_KEY; k6 run sees the system env).
export const DEVPAY = __ENV.DEVPAY_URL || __ENV.EVENTLY_DEVPAY_URL || 'http://127.0.0.1:8004';
const DEVPAY_KEY = __ENV.DEVPAY_API_KEY || __ENV.EVENTLY_DEVPAY_API_KEY || '';
// Seconds a paid order may take from capture to confirmed (a liveness bound, not a speed target).
export const CONFIRM_S = Number(__ENV.CONFIRM_S || 30);
const JSON_HEADERS = { 'Content-Type': 'application/json' };

export function auth(token) {
  return { headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` } };
}

function must(res, status, what) {
  if (res.status !== status) {
    throw new Error(`${what}: expected ${status}, got ${res.status}: ${res.body}`);
  }
  return res.json();
}

export function account(role) {
  const email = `k6-${role}-${Math.random().toString(36).slice(2)}-${Date.now()}@example.com`;
  must(http.post(`${BASE}/api/v1/auth/register`,
    JSON.stringify({ email, password: 'k6-password', name: 'k6', role }), { headers: JSON_HEADERS }), 201, 'register');
  return must(http.post(`${BASE}/api/v1/auth/token`,
    JSON.stringify({ email, password: 'k6-password' }), { headers: JSON_HEADERS }), 200, 'token').access_token;
}

// A published event on a seated venue of `rows` rows of `perRow` seats (section "A"), each seat at `price` minor
// units (0: free orders, confirmed at checkout; more: checkout answers pending_payment and the buyer pays).
export function onSaleEvent(organizer, rows, perRow, price = 4200) {
  const rowList = [];
  for (let r = 1; r <= rows; r++) rowList.push({ label: String(r), seats: perRow });
  const venue = must(http.post(`${BASE}/api/v1/venues`, JSON.stringify({
    name: 'k6 Arena', city: 'Loadville',
    sections: [{ code: 'A', name: 'Floor', kind: 'seated', rows: rowList }],
  }), auth(organizer)), 201, 'venue');
  const event = must(http.post(`${BASE}/api/v1/events`, JSON.stringify({
    venue_id: venue.id, title: `k6 night ${Date.now()}`, category: 'loadtest', starts_at: '2030-01-01T20:00:00Z',
    currency: 'EUR', prices: { A: price },
  }), auth(organizer)), 201, 'event');
  must(http.post(`${BASE}/api/v1/events/${event.id}/publish`, null, auth(organizer)), 200, 'publish');
  return event.id;
}

export function seatId(i, perRow) {
  return `A-${Math.floor(i / perRow) + 1}-${(i % perRow) + 1}`;
}

// `n` accounts of one role, registered and signed in `chunk` at a time (http.batch): password hashing makes
// one-by-one registration the slow part of a set-up with hundreds of buyers. Returns their access tokens.
export function accounts(role, n, chunk = 25) {
  const tokens = [];
  for (let start = 0; start < n; start += chunk) {
    const creds = [];
    for (let i = start; i < Math.min(n, start + chunk); i++) {
      creds.push({ email: `k6-${role}-${i}-${Math.random().toString(36).slice(2)}-${Date.now()}@example.com`,
        password: 'k6-password' });
    }
    http.batch(creds.map((c) => ['POST', `${BASE}/api/v1/auth/register`,
      JSON.stringify({ ...c, name: 'k6', role }), { headers: JSON_HEADERS }]))
      .forEach((res) => must(res, 201, 'register'));
    http.batch(creds.map((c) => ['POST', `${BASE}/api/v1/auth/token`, JSON.stringify(c), { headers: JSON_HEADERS }]))
      .forEach((res) => tokens.push(must(res, 200, 'token').access_token));
  }
  return tokens;
}

// Wait (up to `seconds`) until the query service shows the event; throws otherwise.
export function waitVisible(eventId, seconds = 60) {
  const until = Date.now() + seconds * 1000;
  while (Date.now() < until) {
    if (http.get(`${READ}/api/v1/events/${eventId}`).status === 200) return;
    sleep(0.2);
  }
  throw new Error(`the query service never showed event ${eventId}`);
}

// Throws unless devpay's API key is known (call from setup() of a scenario that pays).
export function requireDevpay() {
  if (!DEVPAY_KEY) {
    throw new Error('no devpay API key: run k6 under `.venv/bin/python -m infra.stack exec -- .venv/bin/k6 run ...` ' +
      '(EVENTLY_DEVPAY_API_KEY) or pass -e DEVPAY_API_KEY=...');
  }
}

// Pay a pending_payment order as its buyer would: capture its payment at devpay (what the Pay button on its
// checkout page does), then poll the command side until the order leaves pending_payment: the same checkout again
// (POST /orders with the same hold) answers 200 with the order in its current state. devpay's signed webhook is
// what confirms it. Bounded by CONFIRM_S. Returns { capture (the capture response), status (the order's final
// status, or 'pending_payment' if it never left it, or null if a poll failed), ms (capture sent -> the command
// side answered a final status; includes up to one poll interval), polls }.
export function pay(order, holdId, params, pollS = 0.05) {
  const sent = Date.now();
  const capture = http.post(`${DEVPAY}/v1/payments/${order.payment.id}/capture`, null,
    { headers: { Authorization: `Bearer ${DEVPAY_KEY}` }, tags: { ep: 'capture' } });
  if (capture.status !== 200) return { capture, status: order.status, ms: null, polls: 0 };
  const body = JSON.stringify({ hold_id: holdId });
  const poll = Object.assign({}, params, { tags: { ep: 'order_poll' } });
  const until = sent + CONFIRM_S * 1000;
  let polls = 0;
  for (;;) {
    sleep(pollS);
    const res = http.post(`${BASE}/api/v1/orders`, body, poll);
    polls += 1;
    if (res.status !== 200) return { capture, status: null, ms: null, polls, res };
    const status = res.json('status');
    if (status !== 'pending_payment') return { capture, status, ms: Date.now() - sent, polls };
    if (Date.now() >= until) return { capture, status, ms: null, polls };
  }
}
