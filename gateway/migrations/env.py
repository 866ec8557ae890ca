from gateway.models import GatewayTable
from kit.migrations import run_migrations

run_migrations(GatewayTable.metadata)
