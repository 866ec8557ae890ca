"""The `patientflow` command: run the whole system locally, manage migrations."""
