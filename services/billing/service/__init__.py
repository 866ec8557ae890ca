"""Billing rules, one module per concern: `accounts` (a visit's account, its views and the daily bill),
`charges`, `payments`, `settlement` and `booking_fees` (an appointment's fee paid at booking, refunded
on cancellation, carried onto the visit at check-in). The price catalogue's rules are in
`services.billing.catalogue`, what billing does with its siblings' events in `services.billing.consumers`.

Every money change to a visit first locks its account row, so on PostgreSQL two payments of the same
visit queue instead of both paying one charge.
"""
