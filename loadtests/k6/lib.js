// Shared set-up for the k6 scenarios: accounts, a venue, an on-sale event.
import http from 'k6/http';
import { sleep } from 'k6';

export const BASE = __ENV.COMMAND_URL || 'http://127.0.0.1:8001';
export const READ = __ENV.QUERY_URL || 'http://127.0.0.1:8002';
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

// A published event on a seated venue of `rows` rows of `perRow` seats (section "A").
export function onSaleEvent(organizer, rows, perRow) {
  const rowList = [];
  for (let r = 1; r <= rows; r++) rowList.push({ label: String(r), seats: perRow });
  const venue = must(http.post(`${BASE}/api/v1/venues`, JSON.stringify({
    name: 'k6 Arena', city: 'Loadville',
    sections: [{ code: 'A', name: 'Floor', kind: 'seated', rows: rowList }],
  }), auth(organizer)), 201, 'venue');
  const event = must(http.post(`${BASE}/api/v1/events`, JSON.stringify({
    venue_id: venue.id, title: `k6 night ${Date.now()}`, category: 'loadtest', starts_at: '2030-01-01T20:00:00Z',
    currency: 'EUR', prices: { A: 4200 },
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
