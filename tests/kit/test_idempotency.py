"""Idempotency keys: one effect per key, the same answer on retry, clear errors on misuse."""

from pathlib import Path

import pytest
from sqlmodel import select

from kit.errors import BadRequest, UnprocessableContent
from kit.idempotency import REPLAYED_HEADER, idempotent
from tests.kit.sample import IdempotencyRecord, Thing, fresh_database


def test_retry_returns_the_first_answer_and_makes_nothing_new(tmp_path: Path) -> None:
    database = fresh_database(tmp_path, "idem")

    def call(key: str | None, name: str) -> tuple[int, bytes, str | None]:
        with database.session() as session:

            def run() -> tuple[int, dict[str, str]]:
                thing = Thing(name=name)
                session.add(thing)
                return 201, {"id": thing.id, "name": name}

            response = idempotent(
                session, IdempotencyRecord, client="his", key=key, payload={"name": name}, run=run
            )
            return response.status_code, bytes(response.body), response.headers.get(REPLAYED_HEADER)

    first = call("k-1", "a")
    again = call("k-1", "a")
    assert first[0] == again[0] == 201 and first[1] == again[1]
    assert first[2] is None and again[2] == "true"
    with pytest.raises(UnprocessableContent):
        call("k-1", "b")  # same key, different body
    with pytest.raises(BadRequest):
        call(None, "c")
    with pytest.raises(BadRequest):
        call("x" * 256, "c")
    with database.session(write=False) as session:
        assert [t.name for t in session.exec(select(Thing)).all()] == ["a"]
    database.dispose()
