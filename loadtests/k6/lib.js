// Shared set-up for the k6 scenarios: accounts, a venue, an on-sale event.
import http from 'k6/http';

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
