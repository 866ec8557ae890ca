"""Registration settings (env prefix `REGISTRATION_`)."""

from datetime import time
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from kit.config import ServiceSettings, service_url_setting


class RegistrationSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REGISTRATION_", extra="ignore")

    service_name: str = "registration"
    # Billing's feed tells registration which visits are settled (`visit.settled`).
    billing_url: str = service_url_setting("billing")
    # Triage's feed: level I/II puts an emergency visit on the green channel (green_channel.py).
    triage_url: str = service_url_setting("triage")
    # The catalogue item charged when a visit opens (诊察费), by visit kind; billing prices it.
    outpatient_fee_item: str = "110200001"
    emergency_fee_item: str = "110200005"

    # Patient sessions (the gateway's POST /v1/patient-sessions asks registration for the proof).
    # A slip code (凭条码) printed when a visit opens works this long; staff may reissue it shorter.
    slip_code_seconds: int = Field(default=12 * 3600, ge=60)
    # The one-time code an app's patient receives by SMS.
    one_time_code_seconds: int = Field(default=300, ge=30)
    # Wrong tries per patient and per device (calling client) before both are locked for a while.
    session_max_failures: int = Field(default=5, ge=1)
    session_lock_seconds: int = Field(default=900, ge=1)
    # How one-time codes reach the patient: "file" appends each message to an outbox file in the
    # data directory (development, tests, or a delivery agent reading it); "package.module:factory"
    # names a deployment's own notifier, called with these settings.
    notifier: str = "file"
    notifier_file: Path | None = None  # default: <data_dir>/sms-outbox.jsonl
    # A disrupted patient's rebooking offer stays open this long (or until its session's booking closes).
    rebooking_offer_hours: int = Field(default=48, ge=1, le=14 * 24)

    # Appointments (预约挂号). The consultation fee (诊察费) by the doctor's title and expert status:
    # billing's catalogue codes, and the price the patient is told at booking (billing charges its own).
    consultation_fee_items: dict[str, str] = Field(
        default_factory=lambda: {
            "resident": "110200001",
            "attending": "110200001",
            "associate_chief": "110200002",
            "chief": "110200003",
            "expert": "110200004",
        }
    )
    consultation_fee_fen: dict[str, int] = Field(
        default_factory=lambda: {
            "110200001": 2000,
            "110200002": 3000,
            "110200003": 4000,
            "110200004": 10000,
        }
    )
    # A hold (status proposed, e.g. while the app takes payment) lapses after this long.
    hold_seconds: int = Field(default=600, ge=1, le=3600)
    # A patient may cancel until this long before the slot; the desk may cancel until arrival.
    cancel_cutoff_minutes: int = Field(default=120, ge=0, le=7 * 24 * 60)
    # Check-in is open from this long before the slot until this long after it.
    checkin_early_minutes: int = Field(default=60, ge=0, le=24 * 60)
    checkin_late_minutes: int = Field(default=30, ge=0, le=24 * 60)
    # A booked appointment not checked in this long after its slot becomes a no-show.
    noshow_grace_minutes: int = Field(default=30, ge=0, le=24 * 60)
    # How often the appointments sweep (lapsed holds, no-shows) runs; 0 turns it off.
    appointment_sweep_seconds: float = Field(default=30.0, ge=0)

    # Inpatient stays and visits that close (services/registration/stays.py, closing.py).
    # An emergency (observation) patient is admitted within this many hours of the emergency visit.
    emergency_admission_hours: float = Field(default=24.0, gt=0)
    # End of the day (hospital time, HH:MM[:SS]): open prepay outpatient visits opened before the latest
    # such moment close, and prepay emergency visits once their admission window has passed.
    end_of_day: time = time(0, 0)
    # How often the background job looks for visits to close; 0 turns it off.
    visit_close_check_seconds: float = Field(default=60.0, ge=0)

    @property
    def resolved_notifier_file(self) -> Path:
        return self.notifier_file or self.data_dir / "sms-outbox.jsonl"


@lru_cache
def get_settings() -> RegistrationSettings:
    return RegistrationSettings()
