"""devpay, the local stack's payment provider (infra/devpay/app.py; issue 13, CONTRACT v2 "Orders, payments and
refunds"). Not part of Evently: it stands in for Stripe, with the same kind of API, hosted page and signed,
retried webhooks, so the payment flow is tested against a real service instead of a fake."""
