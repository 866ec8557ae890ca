from kit.migrations import run_migrations
from services.registration.models import RegistrationTable

run_migrations(RegistrationTable.metadata)
