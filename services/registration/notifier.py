"""How a one-time code reaches the patient's phone: a `Notifier`, chosen by `REGISTRATION_NOTIFIER`.

The default, `file`, appends each message as one JSON line to an outbox file in the data directory
(development and tests read codes there; a delivery agent could send them on). A deployment names
its own SMS adapter as `package.module:factory`, a callable taking the settings.
"""

import importlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kit.clock import utcnow
from kit.logging import mask_phone
from services.registration.config import RegistrationSettings


@dataclass(frozen=True, slots=True)
class TextMessage:
    """One SMS: to whom, for which patient, and what it says."""

    phone: str
    patient_id: str
    text: str


class Notifier(Protocol):
    def send(self, message: TextMessage) -> None: ...


class OutboxFileNotifier:
    """Appends messages to a JSON-lines file (mode 0600); the phone is written masked, as it is not sent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def send(self, message: TextMessage) -> None:
        line = json.dumps(
            {
                "at": utcnow().isoformat(),
                "to": mask_phone(message.phone),
                "patient_id": message.patient_id,
                "text": message.text,
            },
            ensure_ascii=False,
        )
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch(mode=0o600, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as outbox:
                outbox.write(line + "\n")


def build_notifier(settings: RegistrationSettings) -> Notifier:
    """The notifier the settings name; ValueError for a name that is neither `file` nor importable."""
    if settings.notifier == "file":
        return OutboxFileNotifier(settings.resolved_notifier_file)
    module_name, _, factory_name = settings.notifier.partition(":")
    if not module_name or not factory_name:
        raise ValueError("REGISTRATION_NOTIFIER is `file` or `package.module:factory`")
    notifier: Notifier = getattr(importlib.import_module(module_name), factory_name)(settings)
    return notifier
