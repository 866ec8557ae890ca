"""Billing (收费 / 结算): the price catalogue, charges, payments, settlement and the daily itemised bill."""
