"""Stored renderings (renderings.py): each report version is rendered once and a print stamps its marks
on the stored paper; an amended report never prints its old paper, a reprint still says 副本, a report
nobody rendered yet renders on demand, the background loop renders releasable reports ahead of their
first print, and the release rule still decides every print."""

import io
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from pypdf import PdfReader
from sqlmodel import select

from kit.testing import FakeFeed, eventually, service_client
from services.results import printing, renderings
from services.results.app import create_app
from services.results.models import Report, ReportPrint, ReportRendering, ResultsTable
from tests.results.conftest import results_settings
from tests.results.factories import post_report, released_order, report_body
from tests.results.test_printing import kiosk, pdf_text


def text_of(document: bytes) -> str:
    return "".join(page.extract_text() for page in PdfReader(io.BytesIO(document)).pages)


def stored(client: TestClient) -> list[ReportRendering]:
    with client.app.state.database.session(write=False) as session:  # type: ignore[attr-defined]
        return list(session.exec(select(ReportRendering)).all())


def current_report(client: TestClient, report_id: str) -> Report:
    with client.app.state.database.session(write=False) as session:  # type: ignore[attr-defined]
        found = session.get(Report, report_id)
        assert found is not None
        return found


def paper_patient(client: TestClient, report: Report) -> printing.PaperPatient | None:
    """Whom the report's paper names, as results has learned it from registration."""
    with client.app.state.database.session(write=False) as session:  # type: ignore[attr-defined]
        return printing.paper_patient(session, report)


def fresh_paper(client: TestClient, report_id: str) -> bytes:
    """The report's paper rendered now, naming its patient."""
    report = current_report(client, report_id)
    return printing.render_paper(report, paper_patient(client, report))


@pytest.fixture
def papers_rendered(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The report ids `printing.render_paper` rendered, in order (the expensive step, counted)."""
    rendered: list[str] = []
    render: Callable[[Report, printing.PaperPatient | None], bytes] = printing.render_paper

    def counting(report: Report, patient: printing.PaperPatient | None = None) -> bytes:
        rendered.append(report.id)
        return render(report, patient)

    monkeypatch.setattr(printing, "render_paper", counting)
    return rendered


def print_pdf(client: TestClient, report_id: str, patient_id: str) -> tuple[dict[str, object], str]:
    printed = client.post(f"/reports/{report_id}/prints", headers=kiosk(patient_id))
    assert printed.status_code == 201, printed.text
    url = str(printed.json()["pdf_url"]).removeprefix("/v1")
    return printed.json(), pdf_text(client.get(url, headers=kiosk(patient_id)))


def test_a_version_renders_once_and_every_print_of_it_stamps_the_stored_paper(
    client: TestClient, registration: httpx.Client, papers_rendered: list[str]
) -> None:
    order = released_order(client, registration)
    report = post_report(client, order["id"])
    me = order["patient_id"]

    read = pdf_text(client.get(f"/reports/{report['id']}/pdf", headers=kiosk(me)))
    first, original = print_pdf(client, report["id"], me)
    second, copy = print_pdf(client, report["id"], me)

    assert papers_rendered == [report["id"]]  # the read rendered it; both prints stamped the stored paper
    assert [(r.report_id, r.report_version) for r in stored(client)] == [(report["id"], 1)]
    assert "副本" not in read and "打印时间" not in read and "轻度贫血" in read
    assert "副本" not in original and "第 1 份" in original
    assert "副本" in copy and "第 2 份" in copy and "白细胞计数" in copy and "轻度贫血" in copy
    assert (first["is_copy"], second["is_copy"]) == (False, True)


def test_an_amended_report_never_prints_the_paper_of_its_old_version(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    report = post_report(client, order["id"])
    me = order["patient_id"]
    _, before = print_pdf(client, report["id"], me)
    assert "轻度贫血" in before

    amendment = report_body(conclusion="中度贫血，建议复查", reason="复核后更正") | {"status": "amended"}
    amended = client.post(f"/reports/{report['id']}/amendments", json=amendment)
    assert amended.status_code == 200, amended.text

    printed, after = print_pdf(client, report["id"], me)
    read = pdf_text(client.get(f"/reports/{report['id']}/pdf", headers=kiosk(me)))
    for text in (after, read):
        assert "中度贫血" in text and "轻度贫血" not in text
    assert printed["report_version"] == 2 and printed["copy_number"] == 1  # an original of version 2
    assert "副本" not in after
    assert sorted(r.report_version for r in stored(client)) == [1, 2]


def test_a_stored_paper_of_a_row_that_changed_without_a_new_version_is_not_served(
    client: TestClient, registration: httpx.Client, papers_rendered: list[str]
) -> None:
    order = released_order(client, registration)
    report = post_report(client, order["id"])
    me = order["patient_id"]
    client.get(f"/reports/{report['id']}/pdf", headers=kiosk(me))
    with client.app.state.database.session() as session:  # type: ignore[attr-defined]
        row = session.get(Report, report["id"])
        assert row is not None
        row.performing_institution_name = "另一家医院"  # a change that keeps the version
        session.add(row)

    assert "另一家医院" in pdf_text(client.get(f"/reports/{report['id']}/pdf", headers=kiosk(me)))
    assert papers_rendered == [report["id"], report["id"]]


def test_the_stored_paper_is_the_same_content_as_a_fresh_rendering(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    report = post_report(client, order["id"])
    served = pdf_text(client.get(f"/reports/{report['id']}/pdf", headers=kiosk(order["patient_id"])))

    [rendering] = stored(client)
    fresh = fresh_paper(client, report["id"])
    assert text_of(rendering.pdf) == text_of(fresh) == served
    current = current_report(client, report["id"])
    assert rendering.source_digest == renderings.source_digest(current, paper_patient(client, current))


def test_a_withheld_report_is_refused_even_with_its_paper_stored(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    report = post_report(client, order["id"])
    me = order["patient_id"]
    print_pdf(client, report["id"], me)
    assert stored(client)

    held = client.post(f"/reports/{report['id']}/withhold", json={"reason": "需当面告知病情"})
    assert held.status_code == 200, held.text
    assert client.post(f"/reports/{report['id']}/prints", headers=kiosk(me)).status_code == 404
    assert client.get(f"/reports/{report['id']}/pdf", headers=kiosk(me)).status_code == 404


@pytest.fixture
def prerendering_client(
    results_data_dir: Path, registration_url: str, registration: httpx.Client, billing: FakeFeed
) -> Iterator[TestClient]:
    settings = results_settings(results_data_dir, registration_url, billing.url, prerender_seconds=30.0)
    with service_client(create_app(settings), ResultsTable.metadata) as client:
        yield client


def test_a_releasable_report_is_rendered_in_the_background_before_its_first_print(
    prerendering_client: TestClient, registration: httpx.Client, papers_rendered: list[str]
) -> None:
    client = prerendering_client
    order = released_order(client, registration)
    withheld_order = released_order(client, registration, patient_index=1)
    preliminary = post_report(client, withheld_order["id"], status="preliminary")
    report = post_report(client, order["id"])  # its commit wakes the loop (report.final)

    rendering = eventually(lambda: stored(client), what="the final report's paper stored")
    assert [(r.report_id, r.report_version) for r in rendering] == [(report["id"], 1)]
    assert preliminary["id"] not in papers_rendered  # a preliminary report is never rendered ahead

    _, printed = print_pdf(client, report["id"], order["patient_id"])
    assert "第 1 份" in printed and "轻度贫血" in printed
    assert papers_rendered == [report["id"]]  # the print stamped the stored paper


def test_pdfs_render_in_a_process_pool_when_configured(
    results_data_dir: Path, registration_url: str, registration: httpx.Client, billing: FakeFeed
) -> None:
    settings = results_settings(results_data_dir, registration_url, billing.url, pdf_processes=1)
    with service_client(create_app(settings), ResultsTable.metadata) as client:
        order = released_order(client, registration)
        report = post_report(client, order["id"])
        _, first = print_pdf(client, report["id"], order["patient_id"])
        _, second = print_pdf(client, report["id"], order["patient_id"])
        [rendering] = stored(client)
        assert "轻度贫血" in first and "副本" not in first
        assert "副本" in second and "第 2 份" in second
        assert text_of(rendering.pdf) == text_of(fresh_paper(client, report["id"]))


def test_every_print_mark_is_drawn_from_one_font_cut() -> None:
    """A character of the marks missing from `MARK_CHARACTERS` would cut the stamp font again."""
    printed = ReportPrint(
        id="p", report_id="r", report_version=1, copy_number=2, visit_id="v", patient_id="p", client="k"
    )
    printed.printed_at = datetime(2026, 12, 1, tzinfo=UTC)
    used = {c for mark in printing.print_marks(printed) for c in mark.text if ord(c) > 0x7E}
    assert used <= set(printing.MARK_CHARACTERS)
