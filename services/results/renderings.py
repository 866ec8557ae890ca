"""Stored renderings (报告单缓存): each report version is rendered to its PDF paper once, and a print
stamps its marks (副本, the print time) on the stored paper instead of rendering the report again.

Why it is safe: the paper is found by report id **and version** (an amendment or correction is a new
version) and served only when its `source_digest`, taken of the whole report row it was rendered
from, matches the row being printed; anything else renders afresh. The store never decides who gets a
report: every caller reached it through `printing`, which applied the release rule first.

Why it pays: a report costs ~0.1 s of CPU to render, a stamp ~10-20 ms. `Prerenderer` renders reports
as they become releasable, in the background (rendering outside any transaction, then one short write),
so a kiosk's first print is usually a stored read; a report not yet rendered renders on demand and is
stored. With `RESULTS_PDF_PROCESSES` > 0 the rendering and stamping run in a pool of processes, so PDFs
use more than the service's one interpreter.
"""

import dataclasses
import hashlib
import json
import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime, timedelta
from typing import Any

from kit.clock import utcnow
from kit.database import Database
from kit.pdf import prepare_font_in_background
from kit.worker import ThreadWorker
from services.results import printing, repository
from services.results.models import Report, ReportPrint, ReportRendering
from services.results.schemas import FINAL_STATUSES

logger = logging.getLogger("patientflow.results")

PRERENDER_BATCH = 50
PRERENDER_GAP_SECONDS = 0.5  # commits come in bursts: look once per burst, not once per commit


def source_digest(report: Report, patient: printing.PaperPatient | None = None) -> str:
    """A digest of the report row and the patient block a paper is rendered from: a merge or a name
    learned later (无名氏 → the patient's name) changes the paper as an amendment does."""
    source = {"report": report.model_dump(mode="json"), "patient": _patient_values(patient)}
    values = json.dumps(source, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(values.encode()).hexdigest()


def _patient_values(patient: printing.PaperPatient | None) -> dict[str, Any] | None:
    return dataclasses.asdict(patient) if patient is not None else None


def compose(
    report_values: dict[str, Any],
    paper: bytes | None,
    printed_values: dict[str, Any] | None,
    patient_values: dict[str, Any] | None = None,
) -> bytes:
    """The paper of `report_values` for `patient_values` (rendered unless given) with `printed_values`'
    marks stamped on, if any. Plain values in and bytes out, so it runs in a pool process as well as
    here."""
    if paper is None:
        patient = printing.PaperPatient(**patient_values) if patient_values is not None else None
        paper = printing.render_paper(Report(**report_values), patient)
    return paper if printed_values is None else printing.stamp_print(paper, ReportPrint(**printed_values))


def _prepare_process() -> None:
    prepare_font_in_background().join()


class Renderer:
    """Papers from the store, rendered (and stored) when missing; in a process pool when configured.
    A `Worker` of the app only to start and stop its pool."""

    def __init__(self, database: Database, *, processes: int, clock: Callable[[], datetime] = utcnow) -> None:
        self.database, self.processes, self.clock = database, processes, clock
        self._pool: Executor | None = None

    def start(self) -> None:
        if self.processes > 0:
            # spawn, not fork: the service has threads (a forked lock held by one of them never frees).
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(self.processes, mp_context=context, initializer=_prepare_process)
            # Start a process now (and have it cut the font), not at the first kiosk's print.
            self._pool.submit(int)

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def _compose(
        self,
        report: Report,
        paper: bytes | None,
        printed: ReportPrint | None,
        patient: printing.PaperPatient | None,
    ) -> bytes:
        arguments = (
            report.model_dump(),
            paper,
            printed.model_dump() if printed else None,
            _patient_values(patient),
        )
        if self._pool is not None:
            try:
                return self._pool.submit(compose, *arguments).result()
            except BrokenProcessPool:  # a pool process died: this PDF renders here, and the log says so
                logger.exception("the PDF process pool is broken; rendering in the service")
        return compose(*arguments)

    def stored_paper(self, report: Report, patient: printing.PaperPatient | None = None) -> bytes | None:
        """The stored paper of the report's current version, row and patient, if there is one."""
        with self.database.session(write=False) as session:
            found = repository.get_rendering(session, report.id, report.version)
            fresh = found is not None and found.source_digest == source_digest(report, patient)
            return found.pdf if found is not None and fresh else None

    def paper(self, report: Report, patient: printing.PaperPatient | None = None) -> bytes:
        """The report's paper for `patient`: stored, or rendered now and stored (outside any transaction,
        then one short write)."""
        stored = self.stored_paper(report, patient)
        if stored is not None:
            return stored
        paper = self._compose(report, None, None, patient)
        rendering = ReportRendering(
            report_id=report.id,
            report_version=report.version,
            source_digest=source_digest(report, patient),
            pdf=paper,
            rendered_at=self.clock(),
        )
        with self.database.session() as session:
            repository.store_rendering(session, rendering)
        return paper

    def pdf(
        self,
        report: Report,
        printed: ReportPrint | None = None,
        *,
        patient: printing.PaperPatient | None = None,
    ) -> bytes:
        """The PDF to send: the paper naming `patient`, and for a print its marks
        (`printing.print_marks`)."""
        paper = self.paper(report, patient)
        return paper if printed is None else self._compose(report, paper, printed, patient)


class Prerenderer(ThreadWorker):
    """Renders the papers of reports that became releasable (final, verified, not withheld) within
    `lookback`, newest first, as their commits come in (woken by the outbox's commits, and every
    `poll_seconds` for changes that raise no event, like a verification). Payment is not asked: the
    release rule is applied at every print, never here."""

    def __init__(
        self,
        renderer: Renderer,
        *,
        poll_seconds: float,
        lookback: timedelta,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        super().__init__("results-prerenderer")
        self.renderer, self.poll_seconds, self.lookback, self.clock = renderer, poll_seconds, lookback, clock

    @property
    def database(self) -> Database:
        return self.renderer.database

    def run_once(self) -> int:
        """Render one batch; how many were rendered."""
        with self.database.session(write=False) as session:
            due = repository.reports_to_prerender(
                session,
                statuses=[status.value for status in FINAL_STATUSES],
                since=self.clock() - self.lookback,
                limit=PRERENDER_BATCH,
            )
            patients = printing.paper_patients(session, due)
        rendered = 0
        for report in due:
            if self.stopping.is_set():
                break
            self.renderer.paper(report, patients.get(report.patient_id))
            rendered += 1
        return rendered

    def wake(self) -> None:
        self.database.outbox_commits.bump()

    def run(self) -> None:
        while not self.stopping.is_set():
            seen = self.database.outbox_commits.version
            try:
                if self.run_once() >= PRERENDER_BATCH:
                    continue  # more are waiting
            except Exception:  # a database hiccup must not end the loop: try again next round
                logger.exception("pre-rendering report PDFs failed; retrying")
            self.database.outbox_commits.wait(seen, self.poll_seconds)
            self.stopping.wait(PRERENDER_GAP_SECONDS)
