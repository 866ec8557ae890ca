"""Benchmarks that start the real system (`patientflow.supervisor.System`) and load it over HTTP."""
