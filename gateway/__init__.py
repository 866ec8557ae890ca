"""The API gateway: the only door for outside clients (HIS, kiosks, staff apps) into patientflow.

It authenticates API keys, checks each route's scope, and forwards allowed calls to the owning service
with a short-lived internal token. Nothing else reaches a service from outside.
"""
