from kit.migrations import run_migrations
from services.billing.models import BillingTable

run_migrations(BillingTable.metadata)
