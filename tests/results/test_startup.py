"""Start-up: the test catalogue seed is an upsert (every service's migrations: tests/test_migrations.py)."""

from fastapi.testclient import TestClient
from sqlmodel import select

from kit.database import Database
from services.results import service
from services.results.models import OrderableTest


def test_seed_upsert_restores_the_catalogue_without_duplicates(client: TestClient) -> None:
    database: Database = client.app.state.database  # type: ignore[attr-defined]
    with database.session() as session:
        cbc = session.get(OrderableTest, "250101015")
        assert cbc is not None
        cbc.name_en = "edited by hand"
        session.add(cbc)
    with database.session() as session:
        service.load_orderable_tests(session)
    with database.session(write=False) as session:
        tests = session.exec(select(OrderableTest)).all()
    assert len(tests) == 13
    assert next(t for t in tests if t.code == "250101015").name_en == "Complete blood count (CBC)"
