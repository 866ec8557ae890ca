from kit.migrations import run_migrations
from services.results.models import ResultsTable

run_migrations(ResultsTable.metadata)
