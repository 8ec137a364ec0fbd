// Race scenario: a flash sale, many buyers fighting for few seats, and every winner paying for its order.
//   .venv/bin/python -m infra.stack exec -- .venv/bin/k6 run -e VUS=300 -e SEATS=50 loadtests/k6/race.js
// (infra.stack exec gives k6 devpay's API key; PRICE=0 makes the seats free: no payment, confirmed at checkout.)
// setup() creates one on-sale event with SEATS seats (rows of PER_ROW when SEATS divides by it, else one row),
// registers VUS buyers and waits until the query service shows the event. The sale opens when setup() returns:
// every VU starts at once and loops (no think time) holding 1-2 seats picked at random among those it does not
// know to be taken; a 201 hold is checked out at once. Expected: hold 201, or 409 SEATS_UNAVAILABLE / SOLD_OUT
// (details.seats says which seats were taken: the buyer remembers them); checkout 201 pending_payment. The winner
// then pays: capture at devpay (200), then the same checkout again (200, the order as it is now) every 50 ms until
// it is no longer pending_payment; it must be confirmed (devpay's webhook did it) within CONFIRM_S (default 30 s).
// Any other response or outcome fails a check. After REFRESH consecutive refusals the buyer re-reads the seat map
// (query service) and remembers every seat not "available"; it stops once it knows every seat is taken. Holds in
// this scenario are never released (checkout follows at once, hold TTL and payment window 10 min), so a taken seat
// stays taken and the loop ends.
// Bounds: DURATION (maxDuration, default 60s) and at most MAX_ATTEMPTS holds per buyer (default 20 x SEATS).
// teardown() checks the result on the read side (eventually consistent, polled up to SETTLE_S seconds): the seat map
// shows every seat sold, the organizer's stats show sold == SEATS and held == 0, and the seats of all buyers'
// orders for the event add up to SEATS with no seat twice, and every one of those orders is confirmed. Thresholds
// make k6 exit non-zero on any failed check, and unless seats_ordered (the seats of the 201 checkouts) == SEATS and
// seats_confirmed (the seats of the orders that ended confirmed) == SEATS: oversold, undersold and unpaid all fail.
// Reading the summary: k6's "/s" columns divide by the whole run, set-up (password hashing for every buyer)
// included, so they understate. The race's own figures: sold out = max won_at_ms (sale open -> last winning
// hold), race over = max buyer_done_ms, holds attempted/s = holds_attempted / max buyer_done_ms. hold_ms splits
// the hold latency by outcome; capture_ms is devpay's capture, confirm_ms capture sent -> the command side answered
// confirmed (up to one 50 ms poll more than the webhook took); the first 2 unexpected answers of each buyer are
// logged (status, code, dependency).
import http from 'k6/http';
import { check, sleep } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import { BASE, READ, CONFIRM_S, auth, account, accounts, onSaleEvent, pay, requireDevpay, seatId, waitVisible }
  from './lib.js';

const VUS = Number(__ENV.VUS || 300);
const SEATS = Number(__ENV.SEATS || 50);
const PER_ROW_WANTED = Number(__ENV.PER_ROW || 10);
const PER_ROW = SEATS % PER_ROW_WANTED === 0 ? PER_ROW_WANTED : SEATS;
const ROWS = SEATS / PER_ROW;
const REFRESH = Number(__ENV.REFRESH || 5);
const MAX_ATTEMPTS = Number(__ENV.MAX_ATTEMPTS || 20 * SEATS);
const SETTLE_S = Number(__ENV.SETTLE_S || 15);
const REFUSED = ['SEATS_UNAVAILABLE', 'SOLD_OUT'];
const PRICE = Number(__ENV.PRICE ?? 4200);

const holdsAttempted = new Counter('holds_attempted');
const holdsWon = new Counter('holds_won');
const holdsRefused = new Counter('holds_refused');
const orders = new Counter('orders');
const seatsOrdered = new Counter('seats_ordered');
const ordersConfirmed = new Counter('orders_confirmed');
const seatsConfirmed = new Counter('seats_confirmed');
const seatMapReads = new Counter('seatmap_reads');
const holdTime = new Trend('hold_ms', true);          // tagged outcome:won|refused|error
const checkoutTime = new Trend('checkout_ms', true);
const captureTime = new Trend('capture_ms', true);     // devpay's capture
const confirmTime = new Trend('confirm_ms', true);     // capture sent -> the command side answers confirmed
const wonAt = new Trend('won_at_ms', true);           // sale open -> each winning hold's 201; max = sold out
const doneAt = new Trend('buyer_done_ms', true);      // sale open -> a buyer knows every seat is taken

export const options = {
  scenarios: {
    race: { executor: 'per-vu-iterations', vus: VUS, iterations: 1, maxDuration: __ENV.DURATION || '60s',
      gracefulStop: '5s' },
  },
  setupTimeout: '600s',
  teardownTimeout: '120s',
  thresholds: {
    checks: ['rate==1'],
    seats_ordered: [`count==${SEATS}`],
    seats_confirmed: [`count==${SEATS}`],
    orders: ['count>0'],
    // Not checks: k6 prints a tagged sub-metric in the summary only when a threshold names it.
    'hold_ms{outcome:won}': ['p(99)>=0'],
    'hold_ms{outcome:refused}': ['p(99)>=0'],
  },
  summaryTrendStats: ['avg', 'p(50)', 'p(90)', 'p(99)', 'max'],
};

// A refusal (409) is an expected answer in a race: http_req_failed counts only the others.
http.setResponseCallback(http.expectedStatuses(200, 201, 409));

export function setup() {
  if (!Number.isInteger(ROWS) || SEATS < 1 || PER_ROW > 1000) throw new Error(`bad SEATS=${SEATS} / PER_ROW`);
  if (PRICE > 0) requireDevpay();
  const organizer = account('organizer');
  const eventId = onSaleEvent(organizer, ROWS, PER_ROW, PRICE);
  const buyers = accounts('buyer', VUS);
  waitVisible(eventId);
  console.log(`event ${eventId}: ${SEATS} seats (${ROWS} x ${PER_ROW}) at ${PRICE}, ${VUS} buyers; sale opens`);
  return { eventId, organizer, buyers, opened: Date.now() };
}

// The first few unexpected answers of each buyer, for the log (status, error code, which request).
let reported = 0;
function report(what, res) {
  if (reported++ < 2) {
    let code = '';
    try { code = [res.json('error.code'), res.json('error.details.dependency')].filter((x) => x).join(' '); } catch (e) { code = String(res.body).slice(0, 80); }
    console.warn(`VU ${__VU} ${what}: ${res.status} ${code} (${Math.round(res.timings.duration)} ms)`);
  }
}

function pick(free) {
  const want = Math.min(free.length, 1 + Math.floor(Math.random() * 2));
  const chosen = [];
  for (let k = 0; k < want; k++) {
    const j = k + Math.floor(Math.random() * (free.length - k));  // partial Fisher-Yates: distinct seats
    [free[k], free[j]] = [free[j], free[k]];
    chosen.push(free[k]);
  }
  return chosen;
}

export default function (data) {
  const params = auth(data.buyers[__VU - 1]);
  const taken = new Set();
  const all = [];
  for (let i = 0; i < SEATS; i++) all.push(seatId(i, PER_ROW));
  let refusedInRow = 0;
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const free = all.filter((s) => !taken.has(s));
    if (free.length === 0) {
      doneAt.add(Date.now() - data.opened);
      return;
    }
    const seats = pick(free);
    const hold = http.post(`${BASE}/api/v1/events/${data.eventId}/holds`, JSON.stringify({ seats }),
      Object.assign({ tags: { ep: 'hold' } }, params));
    holdsAttempted.add(1);
    const code = hold.status === 409 ? hold.json('error.code') : null;
    const ok = check(hold, { 'hold 201 or 409 SEATS_UNAVAILABLE/SOLD_OUT': (r) => r.status === 201 || REFUSED.includes(code) });
    holdTime.add(hold.timings.duration, { outcome: hold.status === 201 ? 'won' : (ok ? 'refused' : 'error') });
    if (!ok) { report('hold', hold); continue; }
    if (hold.status === 409) {
      holdsRefused.add(1);
      (hold.json('error.details.seats') || seats).forEach((s) => taken.add(s));
      refusedInRow += 1;
      if (REFRESH > 0 && refusedInRow >= REFRESH) {
        refusedInRow = 0;
        const map = http.get(`${READ}/api/v1/events/${data.eventId}/seats`, { tags: { ep: 'seatmap' } });
        seatMapReads.add(1);
        if (check(map, { 'seat map 200': (r) => r.status === 200 })) {
          map.json('seats').forEach((s) => { if (s.status !== 'available') taken.add(s.id); });
        } else {
          report('seat map', map);
        }
      }
      continue;
    }
    refusedInRow = 0;
    holdsWon.add(1);
    wonAt.add(Date.now() - data.opened);
    seats.forEach((s) => taken.add(s));
    const order = http.post(`${BASE}/api/v1/orders`, JSON.stringify({ hold_id: hold.json('id') }),
      Object.assign({ tags: { ep: 'order' } }, params));
    checkoutTime.add(order.timings.duration);
    const expected = PRICE > 0 ? 'pending_payment' : 'confirmed';
    if (!check(order, { [`order 201 ${expected}`]: (r) => r.status === 201 && r.json('status') === expected })) {
      report('checkout', order);
      continue;
    }
    orders.add(1);
    const mine = (order.json('seats') || []).length;
    seatsOrdered.add(mine);
    let final = 'confirmed';
    if (PRICE > 0) {
      const paid = pay(order.json(), hold.json('id'), params);
      captureTime.add(paid.capture.timings.duration);
      if (!check(paid.capture, { 'capture 200': (r) => r.status === 200 })) report('capture', paid.capture);
      else if (paid.res) report('order poll', paid.res);
      final = paid.status;
      if (paid.ms !== null) confirmTime.add(paid.ms);
    }
    if (check(final, { [`order confirmed (within ${CONFIRM_S} s of its capture)`]: (f) => f === 'confirmed' })) {
      ordersConfirmed.add(1);
      seatsConfirmed.add(mine);
    } else {
      console.warn(`VU ${__VU}: order ${order.json('id')} ended ${final}`);
    }
  }
  doneAt.add(Date.now() - data.opened);
}

function soldSeats(eventId) {
  const res = http.get(`${READ}/api/v1/events/${eventId}/seats`);
  if (res.status !== 200) return { total: -1, sold: -1 };
  const seats = res.json('seats');
  return { total: seats.length, sold: seats.filter((s) => s.status === 'sold').length };
}

// Every buyer's orders for the event (query service /me/orders, 100 a page): seats per seat id.
function orderedSeats(data) {
  const counts = {};
  const statuses = {};
  let orderCount = 0;
  for (let start = 0; start < data.buyers.length; start += 50) {
    const tokens = data.buyers.slice(start, start + 50);
    let page = 1;
    let pending = tokens.map((t) => ({ t, page }));
    while (pending.length) {
      const responses = http.batch(pending.map((p) => ['GET',
        `${READ}/api/v1/me/orders?page=${p.page}&page_size=100`, null, auth(p.t)]));
      const next = [];
      responses.forEach((res, k) => {
        if (res.status !== 200) throw new Error(`/me/orders: ${res.status}: ${res.body}`);
        const body = res.json();
        body.items.filter((o) => o.event.id === data.eventId && o.status !== 'cancelled').forEach((o) => {
          orderCount += 1;
          statuses[o.status] = (statuses[o.status] || 0) + 1;
          (o.seats || []).forEach((s) => { counts[s] = (counts[s] || 0) + 1; });
        });
        if (body.page * body.page_size < body.total) next.push({ t: pending[k].t, page: pending[k].page + 1 });
      });
      pending = next;
    }
  }
  return { counts, orderCount, statuses };
}

export function teardown(data) {
  const until = Date.now() + SETTLE_S * 1000;
  let map = soldSeats(data.eventId);
  while (map.sold !== SEATS && Date.now() < until) { sleep(0.25); map = soldSeats(data.eventId); }
  console.log(`seat map: ${map.sold}/${map.total} sold, ${((Date.now() - data.opened) / 1000).toFixed(1)} s after the sale opened`);
  check(map, { 'teardown: seat map shows every seat sold': (m) => m.total === SEATS && m.sold === SEATS });

  let stats = http.get(`${READ}/api/v1/organizer/events/${data.eventId}/stats`, auth(data.organizer)).json();
  while ((stats.sold !== SEATS || stats.held !== 0) && Date.now() < until) {
    sleep(0.25);
    stats = http.get(`${READ}/api/v1/organizer/events/${data.eventId}/stats`, auth(data.organizer)).json();
  }
  console.log(`organizer stats: sold ${stats.sold}, held ${stats.held}, available ${stats.available}, orders ${stats.orders}`);
  check(stats, { 'teardown: organizer stats sold == SEATS, held == 0': (s) => s.sold === SEATS && s.held === 0 });

  let got = orderedSeats(data);
  const seatTotal = (g) => Object.values(g.counts).reduce((a, b) => a + b, 0);
  const allConfirmed = (g) => (g.statuses.confirmed || 0) === g.orderCount;
  while ((seatTotal(got) < SEATS || !allConfirmed(got)) && Date.now() < until) { sleep(0.5); got = orderedSeats(data); }
  const twice = Object.keys(got.counts).filter((s) => got.counts[s] > 1);
  console.log(`buyers' orders: ${got.orderCount} orders, ${seatTotal(got)} seats, ${Object.keys(got.counts).length} distinct, ` +
    `${twice.length} in two orders${twice.length ? ': ' + twice.slice(0, 10).join(' ') : ''}; statuses ` +
    JSON.stringify(got.statuses));
  check(got, {
    'teardown: no seat in two orders': () => twice.length === 0,
    'teardown: ordered seats == SEATS': (g) => seatTotal(g) === SEATS && Object.keys(g.counts).length === SEATS,
    'teardown: read-side orders == organizer stats orders': (g) => g.orderCount === stats.orders,
    'teardown: every order confirmed (read side)': (g) => g.orderCount > 0 && allConfirmed(g),
  });
}
