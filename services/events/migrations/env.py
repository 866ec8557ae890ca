from kit.migrations import run_migrations
from services.events.models import EventsTable

run_migrations(EventsTable.metadata)
