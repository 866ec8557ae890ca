"""The results service's FastAPI app."""

from datetime import timedelta
from functools import partial
from pathlib import Path

from fastapi import FastAPI

from kit.app import Worker, build_service_app
from kit.database import Database
from kit.feed import EventHandler, Feed, PageResolver
from kit.pdf import prepare_font_in_background
from services.results import consumers, recognition, service
from services.results.config import ResultsSettings, get_settings
from services.results.escalation import CriticalEscalator
from services.results.models import ConsumedEvent, FeedCursor, OutboxEvent
from services.results.renderings import Prerenderer, Renderer
from services.results.router import router
from services.results.turnaround import OverdueWatcher
from services.results.turnaround_router import router as turnaround_router


def create_app(settings: ResultsSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    return build_service_app(
        settings=settings,
        title="patientflow results",
        description="Orderable tests, orders behind the payment gate, reports and audited lookup (检查检验).",
        # The turnaround router first: its `/orders/overdue` before the main router's `/orders/{id}`.
        routers=[turnaround_router, router],
        outbox_model=OutboxEvent,
        migrations_dir=Path(__file__).parent / "migrations",
        # Billing answers the settle-later credit check before an order is placed (service.fetch_credit).
        siblings={"registration": settings.registration_url, "billing": settings.billing_url},
        feeds=[
            Feed(
                source="billing",
                url=settings.billing_url,
                handle_factory=_billing_handler,
                event_types=consumers.BILLING_EVENTS,
            ),
            Feed(
                source="registration",
                url=settings.registration_url,
                handle_factory=_registration_handler,
                resolve=_registration_resolver,
                event_types=consumers.REGISTRATION_EVENTS,
            ),
        ],
        feed_models=(FeedCursor, ConsumedEvent),
        on_startup=_load_tests,
        # Critical values nobody acknowledged in time are escalated (escalation.py).
        workers=[
            *([_critical_escalator] if settings.critical_check_seconds > 0 else []),
            # Orders past their turnaround target get one `order.overdue` (turnaround.py).
            *([_overdue_watcher] if settings.overdue_check_seconds > 0 else []),
            # Report PDFs: the renderer's process pool, and papers rendered ahead of the first print.
            _renderer,
            *([_prerenderer] if settings.prerender_seconds > 0 else []),
        ],
    )


def _billing_handler(app: FastAPI) -> EventHandler:
    # Where release requires payment, a payment is what makes a report releasable (`releasable_at`).
    return partial(consumers.apply_billing_event, require_payment=app.state.settings.release_requires_payment)


def _patient_names(app: FastAPI) -> consumers.PatientNames:
    """One name look-up per app, shared by the registration feed's resolver and handler."""
    if getattr(app.state, "patient_names", None) is None:
        app.state.patient_names = consumers.PatientNames(
            app.state.siblings["registration"], app.state.database
        )
    names: consumers.PatientNames = app.state.patient_names
    return names


def _registration_handler(app: FastAPI) -> EventHandler:
    return partial(consumers.apply_registration_event, names=_patient_names(app))


def _registration_resolver(app: FastAPI) -> PageResolver:
    return _patient_names(app).resolve


def _overdue_watcher(app: FastAPI, database: Database) -> Worker:
    return OverdueWatcher(database, app.state.settings)


def _critical_escalator(app: FastAPI, database: Database) -> Worker:
    return CriticalEscalator(database, app.state.settings)


def _renderer(app: FastAPI, database: Database) -> Worker:
    app.state.renderer = Renderer(database, processes=app.state.settings.pdf_processes)
    return app.state.renderer


def _prerenderer(app: FastAPI, _database: Database) -> Worker:
    settings: ResultsSettings = app.state.settings
    lookback = timedelta(minutes=settings.prerender_lookback_minutes)
    return Prerenderer(app.state.renderer, poll_seconds=settings.prerender_seconds, lookback=lookback)


def _load_tests(_app: FastAPI, database: Database) -> None:
    with database.session() as session:
        service.load_orderable_tests(session)
        recognition.load_windows(session)
    # Kiosks print: have the PDF font ready before the first one asks (kit.pdf; once per process).
    prepare_font_in_background()
