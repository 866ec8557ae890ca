"""The shared kernel: domain-free plumbing every patientflow service and the gateway use.

Settings, database sessions, the problem+json error tree, request ids, health routes, the
transactional outbox and its feed, internal credentials and logging. No domain models here.
"""
