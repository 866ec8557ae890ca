"""Triage (分诊): emergency triage levels and the numbered waiting queues of each department."""
