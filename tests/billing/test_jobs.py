"""The nightly jobs from the command line (`python -m services.billing.jobs`), on the service's database."""

import json

import httpx
import pytest
from fastapi.testclient import TestClient

from services.billing import jobs
from tests.billing.factories import billing_events
from tests.billing.inpatients import admitted_visit, day_charges, today


def test_the_jobs_run_from_the_command_line_and_repeat_safely(
    registration: httpx.Client,
    client: TestClient,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    visit = admitted_visit(registration, client)
    monkeypatch.setattr(jobs, "get_settings", lambda: client.app.state.settings)  # type: ignore[attr-defined]
    day = ["--date", today().isoformat()]

    outputs = []
    for job in ("inpatient-days", "inpatient-days", "daily-bills", "daily-bills"):
        assert jobs.main([job, *day]) == 0
        outputs.append(json.loads(capsys.readouterr().out))

    assert [outputs[0]["posted"], outputs[1]["posted"]] == [2, 0]
    assert [outputs[2]["issued"], outputs[3]["issued"]] == [1, 0]
    assert len(day_charges(client, visit["id"])) == 2
    assert [e["visit_id"] for e in billing_events(client, "daily_bill.ready")] == [visit["id"]]
