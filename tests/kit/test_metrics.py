"""Request metrics by route template, feed lag and outbox position, and the JSON access log."""

import asyncio
import io
import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlmodel import Session

from kit.auth import TokenSource
from kit.feed import PAGE_SIZE, FeedConsumer, FeedReader
from kit.logging import ACCESS_LOGGER, JsonFormatter, MaskingFilter
from kit.testing import FakeFeed, feed_headers, make_test_settings, serve, service_client
from services.registration.app import create_app
from services.registration.config import RegistrationSettings
from services.registration.models import RegistrationTable
from tests.kit.sample import ConsumedEvent, FeedCursor, fresh_database


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def registration(data_dir: Path) -> Iterator[TestClient]:
    app = create_app(make_test_settings(RegistrationSettings, data_dir))
    with service_client(app, RegistrationTable.metadata) as client:
        yield client


def test_requests_are_counted_by_route_template_never_the_raw_path(registration: TestClient) -> None:
    labels = {"service": "registration", "route": "/visits/{visit_id}", "method": "GET", "status": "404"}
    before = sample("patientflow_http_requests_total", **labels)
    for _ in range(3):
        assert registration.get(f"/visits/{uuid.uuid4()}").status_code == 404
    assert sample("patientflow_http_requests_total", **labels) == before + 3
    assert sample("patientflow_http_request_duration_seconds_count", **labels) == before + 3
    scraped = registration.get("/metrics").text
    assert 'route="/visits/{visit_id}"' in scraped
    assert "/visits/" + "0" not in scraped  # no raw ids anywhere in the series


def test_unmatched_paths_share_one_label(registration: TestClient) -> None:
    labels = {"service": "registration", "route": "other", "method": "GET", "status": "404"}
    before = sample("patientflow_http_requests_total", **labels)
    registration.get(f"/no-such-thing/{uuid.uuid4()}")
    registration.get(f"/another/{uuid.uuid4()}")
    assert sample("patientflow_http_requests_total", **labels) == before + 2


def test_building_the_app_twice_registers_no_duplicate_metrics(data_dir: Path) -> None:
    settings = make_test_settings(RegistrationSettings, data_dir)
    create_app(settings)
    create_app(settings)  # a second app in one process must not raise "Duplicated timeseries"


def test_metrics_are_open_and_show_the_outbox_position(registration: TestClient) -> None:
    patient = {"id_number": "11010519491231002X", "name": "张三"}
    assert registration.post("/patients", json=patient).status_code == 201
    feed = registration.get("/events", headers=feed_headers("registration")).json()
    newest = feed["events"][-1]["position"]
    response = registration.get("/metrics", headers={"authorization": ""})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert sample("patientflow_outbox_position", service="registration") == newest


def test_feed_lag_is_the_age_of_the_last_applied_event_and_zero_when_caught_up(tmp_path: Path) -> None:
    feed = FakeFeed()
    sink = fresh_database(tmp_path, "lag")
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    for _ in range(PAGE_SIZE + 1):  # a full page, so more may wait behind it, then the rest
        feed.publish({"id": str(uuid.uuid4()), "type": "x", "occurred_at": an_hour_ago, "data": {}})

    def ignore(_session: Session, _event: dict[str, Any]) -> None:
        return None

    labels = {"consumer": "kit-test", "source": "lagging"}

    async def read_two_pages(url: str) -> None:
        consumer = FeedConsumer(
            source="lagging",
            base_url=url,
            database=sink,
            cursor_model=FeedCursor,
            consumed_model=ConsumedEvent,
            handle=ignore,
            tokens=TokenSource("s", "service:test", set()),
            consumer="kit-test",
            wait_seconds=0,
        )
        async with FeedReader(wait_seconds=0) as reader:
            assert await consumer.poll_once(reader) == PAGE_SIZE
            assert sample("patientflow_feed_lag_seconds", **labels) >= 3600
            assert sample("patientflow_feed_cursor", **labels) == PAGE_SIZE
            assert await consumer.poll_once(reader) == 1  # the last: nothing more waits
            assert sample("patientflow_feed_lag_seconds", **labels) == 0
            assert sample("patientflow_feed_cursor", **labels) == PAGE_SIZE + 1

    with serve(feed.app) as url:
        asyncio.run(read_two_pages(url))
    sink.dispose()


@contextmanager
def access_log(level: int = logging.INFO) -> Iterator[io.StringIO]:
    """The access log's lines at `level` and above, as the production handler writes them."""
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    handler.addFilter(MaskingFilter())
    handler.setFormatter(JsonFormatter("registration"))
    handler.setLevel(level)
    access = logging.getLogger(ACCESS_LOGGER)
    access.addHandler(handler)
    access.setLevel(logging.DEBUG)
    try:
        yield written
    finally:
        access.removeHandler(handler)
        access.setLevel(logging.NOTSET)


def test_access_log_is_one_json_line_per_request_with_the_request_id(registration: TestClient) -> None:
    with access_log() as written:
        path = f"/patients/{uuid.uuid4()}?id_number=11010519491231002X"
        registration.get(path, headers={"x-request-id": "rid-7"})
    [line] = [json.loads(text) for text in written.getvalue().splitlines()]
    assert line["request_id"] == "rid-7"
    assert (line["method"], line["route"], line["status"]) == ("GET", "/patients/{patient_id}", 404)
    assert {"ts", "level", "service", "logger", "message", "duration_ms"} <= line.keys()
    assert "1101051949" not in written.getvalue()  # the query string is never logged


def test_polls_are_logged_at_debug_and_a_failed_poll_at_info(registration: TestClient) -> None:
    with access_log(logging.INFO) as info, access_log(logging.DEBUG) as debug:
        for _ in range(5):
            assert registration.get("/events", headers=feed_headers("registration")).status_code == 200
            assert registration.get("/readyz").status_code == 200
        registration.get(f"/patients/{uuid.uuid4()}")
        assert registration.get("/events", headers={"authorization": "Bearer nope"}).status_code == 401
    info_lines = [
        (line["level"], line["route"], line["status"])
        for line in map(json.loads, info.getvalue().splitlines())
    ]
    assert info_lines == [("INFO", "/patients/{patient_id}", 404), ("INFO", "/events", 401)]
    debug_routes = [json.loads(line)["route"] for line in debug.getvalue().splitlines()]
    assert debug_routes.count("/events") == 6 and debug_routes.count("/readyz") == 5
