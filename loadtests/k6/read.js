// Read scenario: the public read API (list, detail, seat map) of the query service.
//   k6 run -e VUS=64 -e DURATION=20s loadtests/k6/read.js
// setup() creates one on-sale event (10 rows x 50 seats + a GA section) through the command service and waits
// until the query service has it. Each iteration GETs one of list / detail / seat map (weights 1:2:1); every
// response must be 200 (thresholds make k6 exit non-zero otherwise). Tags split the latency per endpoint.
import http from 'k6/http';
import { check, sleep } from 'k6';
import { BASE, READ, auth, account } from './lib.js';

const VUS = Number(__ENV.VUS || 64);

export const options = {
  scenarios: { read: { executor: 'constant-vus', vus: VUS, duration: __ENV.DURATION || '20s', gracefulStop: '5s' } },
  setupTimeout: '120s',
  thresholds: {
    checks: ['rate==1'],
    'http_req_duration{ep:list}': ['p(99)>=0'],
    'http_req_duration{ep:detail}': ['p(99)>=0'],
    'http_req_duration{ep:seats}': ['p(99)>=0'],
  },
  summaryTrendStats: ['avg', 'p(50)', 'p(90)', 'p(99)', 'max'],
};

export function setup() {
  const organizer = account('organizer');
  const rows = [];
  for (let r = 1; r <= 10; r++) rows.push({ label: String(r), seats: 50 });
  const venue = http.post(`${BASE}/api/v1/venues`, JSON.stringify({
    name: 'k6 Read Hall', city: 'Readville',
    sections: [{ code: 'A', name: 'Stalls', kind: 'seated', rows }, { code: 'GA', name: 'Floor', kind: 'ga', capacity: 500 }],
  }), auth(organizer)).json();
  const event = http.post(`${BASE}/api/v1/events`, JSON.stringify({
    venue_id: venue.id, title: `k6 read ${Date.now()}`, category: 'loadtest', starts_at: '2030-02-01T20:00:00Z',
    currency: 'EUR', prices: { A: 4200, GA: 1500 },
  }), auth(organizer)).json();
  http.post(`${BASE}/api/v1/events/${event.id}/publish`, null, auth(organizer));
  for (let i = 0; i < 300; i++) {
    if (http.get(`${READ}/api/v1/events/${event.id}`).status === 200) return { id: event.id };
    sleep(0.2);
  }
  throw new Error('the query service never showed the event');
}

export default function (data) {
  const r = __ITER % 4;
  let res;
  if (r === 0) {
    res = http.get(`${READ}/api/v1/events?status=on_sale&page_size=20`, { tags: { ep: 'list' } });
  } else if (r === 3) {
    res = http.get(`${READ}/api/v1/events/${data.id}/seats`, { tags: { ep: 'seats' } });
  } else {
    res = http.get(`${READ}/api/v1/events/${data.id}`, { tags: { ep: 'detail' } });
  }
  check(res, { '200': (x) => x.status === 200 });
}
