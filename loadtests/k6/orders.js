// Write scenario: buyers in a closed loop, each holding the next free seat and checking it out.
//   k6 run -e VUS=48 -e DURATION=20s loadtests/k6/orders.js
// Every VU owns a disjoint run of seats (seat = VU + iteration * VUS), so every hold should succeed:
// a non-201 is a failure, and the thresholds make k6 exit non-zero on any.
import http from 'k6/http';
import { check } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import { BASE, auth, account, onSaleEvent, seatId } from './lib.js';

const VUS = Number(__ENV.VUS || 48);
const ROWS = 50;
const PER_ROW = 1000;
const orders = new Counter('orders');
const holds = new Counter('holds');
const checkoutTime = new Trend('checkout_ms', true);
const holdTime = new Trend('hold_ms', true);

export const options = {
  scenarios: {
    orders: { executor: 'constant-vus', vus: VUS, duration: __ENV.DURATION || '20s', gracefulStop: '5s' },
  },
  setupTimeout: '120s',
  thresholds: { checks: ['rate==1'] },
  summaryTrendStats: ['avg', 'p(50)', 'p(99)', 'max'],
};

export function setup() {
  const organizer = account('organizer');
  const eventId = onSaleEvent(organizer, ROWS, PER_ROW);
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
  if (check(order, { 'order 201': (r) => r.status === 201 })) orders.add(1);
}
