from kit.migrations import run_migrations
from services.triage.models import TriageTable

run_migrations(TriageTable.metadata)
