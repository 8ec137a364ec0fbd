// Write scenario: buyers in a closed loop, each holding the next free seat, checking it out and paying for it.
//   .venv/bin/python -m infra.stack exec -- .venv/bin/k6 run -e VUS=48 -e DURATION=20s loadtests/k6/orders.js
// Every VU owns a disjoint run of seats (seat = VU + iteration * VUS), so every hold should succeed:
// a non-201 is a failure, and the thresholds make k6 exit non-zero on any. With a price (PRICE, default 4200) the
// checkout answers 201 pending_payment and the buyer pays as in race.js: capture at devpay (infra.stack exec gives
// k6 its API key), then the same checkout again until the order is confirmed (devpay's webhook), within CONFIRM_S.
// PRICE=0: free orders, confirmed at checkout (the path before payments). orders counts confirmed orders.
import http from 'k6/http';
import { check } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import { BASE, auth, account, onSaleEvent, pay, requireDevpay, seatId } from './lib.js';

const VUS = Number(__ENV.VUS || 48);
const ROWS = 50;
const PER_ROW = 1000;
const PRICE = Number(__ENV.PRICE ?? 4200);
const orders = new Counter('orders');
const holds = new Counter('holds');
const checkoutTime = new Trend('checkout_ms', true);
const holdTime = new Trend('hold_ms', true);
const captureTime = new Trend('capture_ms', true);
const confirmTime = new Trend('confirm_ms', true);   // capture sent -> the command side answers confirmed

export const options = {
  scenarios: {
    orders: { executor: 'constant-vus', vus: VUS, duration: __ENV.DURATION || '20s', gracefulStop: '5s' },
  },
  setupTimeout: '120s',
  thresholds: { checks: ['rate==1'] },
  summaryTrendStats: ['avg', 'p(50)', 'p(99)', 'max'],
};

export function setup() {
  if (PRICE > 0) requireDevpay();
  const organizer = account('organizer');
  const eventId = onSaleEvent(organizer, ROWS, PER_ROW, PRICE);
  const buyers = [];
  for (let i = 0; i < VUS; i++) buyers.push(account('buyer'));
  return { eventId, buyers };
}

export default function (data) {
  const i = (__VU - 1) + __ITER * VUS;
  if (i >= ROWS * PER_ROW) return;
  const params = auth(data.buyers[__VU - 1]);
  const hold = http.post(`${BASE}/api/v1/events/${data.eventId}/holds`,
    JSON.stringify({ seats: [seatId(i, PER_ROW)] }), params);
  holdTime.add(hold.timings.duration);
  if (!check(hold, { 'hold 201': (r) => r.status === 201 })) return;
  holds.add(1);
  const order = http.post(`${BASE}/api/v1/orders`, JSON.stringify({ hold_id: hold.json('id') }), params);
  checkoutTime.add(order.timings.duration);
  const expected = PRICE > 0 ? 'pending_payment' : 'confirmed';
  if (!check(order, { [`order 201 ${expected}`]: (r) => r.status === 201 && r.json('status') === expected })) return;
  if (PRICE > 0) {
    const paid = pay(order.json(), hold.json('id'), params);
    captureTime.add(paid.capture.timings.duration);
    if (!check(paid.capture, { 'capture 200': (r) => r.status === 200 })) return;
    if (paid.ms !== null) confirmTime.add(paid.ms);
    if (!check(paid.status, { 'order confirmed after payment': (st) => st === 'confirmed' })) return;
  }
  orders.add(1);
}
