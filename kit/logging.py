"""Logging with the request id on every line and personal identifiers masked before they are written."""

import logging
import re

from kit.requestid import current_request_id

# An 18-digit resident identity number (last char may be X) and a mainland mobile number.
_ID_NUMBER = re.compile(r"(?<!\d)(\d{6})\d{8}(\d{3}[\dXx])(?!\d)")
_MOBILE = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")


def mask_identifiers(text: str) -> str:
    """`110105********002X` style: keep region and the last four, hide the birth date."""
    text = _ID_NUMBER.sub(lambda m: f"{m.group(1)}********{m.group(2)}", text)
    return _MOBILE.sub(lambda m: f"{m.group(1)}****{m.group(2)}", text)


class MaskingFilter(logging.Filter):
    """Adds `request_id` to each record and masks identity and phone numbers in its message."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id() or "-"
        message = record.getMessage()
        masked = mask_identifiers(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def configure_logging(service_name: str, level: str = "INFO") -> None:
    """One format for every service: time, service, level, request id, message."""
    handler = logging.StreamHandler()
    handler.addFilter(MaskingFilter())
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s {service_name} %(levelname)s [%(request_id)s] %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
