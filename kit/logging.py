"""Structured logs: one JSON object per line, with the request id, and personal identifiers masked.

Every line carries `ts`, `level`, `service`, `logger`, `request_id` and `message`, plus whatever the
caller passed as `extra=`. Identity numbers and mobile numbers are masked wherever they appear; names
are masked where we can tell a value is a name: extras under a `*name` key, and `"name": "..."` pairs
inside logged JSON or dict text. uvicorn's own loggers are routed through the same handler.
Machines' polls (feeds, health checks) are logged at DEBUG: see `kit.metrics.POLLED_ROUTES`.
"""

import json
import logging
import logging.handlers
import re
import sys
import time
from pathlib import Path
from typing import Any

from kit.config import ServiceSettings
from kit.requestid import current_request_id

# An 18-digit resident identity number (last char may be X) and a mainland mobile number.
_ID_NUMBER = re.compile(r"(?<!\d)(\d{6})\d{8}(\d{3}[\dXx])(?!\d)")
_MOBILE = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")
# `"name": "张三"`, `'patient_name': '张三'` (JSON or a dict's repr); the key is kept, the value masked.
_NAME_PAIR = re.compile(r"""(["'](?:\w*_)?name["']\s*:\s*)(["'])(.*?)(?<!\\)\2""", re.IGNORECASE)
_NAME_KEY = re.compile(r"^(?:\w*_)?name$", re.IGNORECASE)
# LogRecord's own attributes: everything else on a record came from `extra=`.
_RECORD_FIELDS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "request_id"}
ACCESS_LOGGER = "patientflow.access"
PLAIN_TEXT = "patientflow_plain_text"
"""`extra={PLAIN_TEXT: True}`: the record's author vouches its message and extras hold no personal data
(the access log: a method, a route template, a status, a duration), so they are written unmasked; the
masking regexes cost more than the rest of such a line. Never set it for text a caller sent."""
_NOT_EXTRAS = _RECORD_FIELDS | {PLAIN_TEXT}


def mask_identifiers(text: str) -> str:
    """`110105********002X` style: keep region and the last four, hide the birth date."""
    text = _ID_NUMBER.sub(lambda m: f"{m.group(1)}********{m.group(2)}", text)
    return _MOBILE.sub(lambda m: f"{m.group(1)}****{m.group(2)}", text)


def mask_name(name: str) -> str:
    """`张**`: the surname stays (staff can still tell records apart), the given name goes."""
    return name[:1] + "*" * max(len(name) - 1, 2) if name else name


def mask_phone(phone: str) -> str:
    """`139****1234`: the last four stay (the patient can confirm them), the subscriber part goes."""
    head = 3 if len(phone) >= 11 else 0
    return phone[:head] + "*" * max(len(phone) - head - 4, 4) + phone[-4:] if len(phone) > 4 else "****"


def mask_text(text: str) -> str:
    """Identity numbers, phone numbers and `name` pairs masked in free text."""
    text = _NAME_PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}{mask_name(m.group(3))}{m.group(2)}", text)
    return mask_identifiers(text)


def mask_value(key: str, value: Any) -> Any:
    """An extra's value, masked by its key (names) and its content (numbers), recursively."""
    if isinstance(value, str):
        return mask_name(value) if _NAME_KEY.match(key) else mask_text(value)
    if isinstance(value, dict):
        return {k: mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(key, v) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return mask_text(str(value))


class MaskingFilter(logging.Filter):
    """Adds `request_id` to each record and masks identity and phone numbers and names in its message."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id() or "-"
        if getattr(record, PLAIN_TEXT, False):
            return True
        message = record.getMessage()
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extras are masked here, so no handler can write them in clear."""

    def __init__(self, service_name: str) -> None:
        super().__init__()
        self.service_name = service_name

    def format(self, record: logging.LogRecord) -> str:
        plain = getattr(record, PLAIN_TEXT, False)
        message = record.getMessage()
        extras = {
            key: value if plain else mask_value(key, value)
            for key, value in record.__dict__.items()
            if key not in _NOT_EXTRAS
        }
        request_id = getattr(record, "request_id", None) or current_request_id() or "-"
        line = self.line(
            record.created, record.levelname, record.name, request_id, message, extras, plain=plain
        )
        if record.exc_info:
            line["exception"] = mask_text(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False, default=str)

    def line(
        self,
        created: float,
        level: str,
        logger: str,
        request_id: str,
        message: str,
        extras: dict[str, Any],
        *,
        plain: bool,
    ) -> dict[str, Any]:
        """The line's fields, extras (already masked, unless plain) after the fixed ones, never over them."""
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
            + f".{int(created % 1 * 1000):03d}Z",
            "level": level,
            "service": self.service_name,
            "logger": logger,
            "request_id": request_id,
            "message": message if plain else mask_text(message),
        }
        for key, value in extras.items():
            line.setdefault(key, value)
        return line


class JsonLines(logging.StreamHandler):  # type: ignore[type-arg]
    """The process's JSON lines on a stream (stderr): `write_line` writes a formatted line in one write."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write(self.format(record))
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def write(self, text: str) -> None:
        """One line out, flushed (the caller holds the handler's lock)."""
        self.stream.write(text + self.terminator)
        self.flush()

    def write_line(self, text: str) -> None:
        """`text` (one formatted line) written as `emit` would, under the handler's lock; a failed write
        (a closed stream, a full disk, a failed rollover) is reported as `emit` reports it, never raised
        into the request that logged it."""
        with self.lock:  # type: ignore[union-attr]
            try:
                self.write(text)
            except RecursionError:
                raise
            except Exception:
                self.handleError(logging.makeLogRecord({"msg": text}))


class RotatingLogFile(logging.handlers.RotatingFileHandler, JsonLines):
    """`RotatingFileHandler` that formats each record once: the standard one formats it a second time, and
    stats the file twice, on every record only to decide whether to roll over. Whether the file is a
    regular one (only those roll over, bpo-45401) is checked when it is opened."""

    def _open(self) -> Any:
        self._regular = not Path(self.baseFilename).exists() or Path(self.baseFilename).is_file()
        return super()._open()

    emit = JsonLines.emit

    def write(self, text: str) -> None:
        text += self.terminator
        if self.stream is None:
            self.stream = self._open()
        if self.maxBytes > 0 and self._regular and self.stream.tell() + len(text) >= self.maxBytes:
            self.doRollover()
            if self.stream is None:
                self.stream = self._open()
        self.stream.write(text)
        self.flush()


_process_handler: JsonLines | None = None  # the handler `configure_logging` installed on the root logger


def log_plain(logger: logging.Logger, level: int, message: str, fields: dict[str, str | int | float]) -> None:
    """`logger.log(level, message, extra={**fields, PLAIN_TEXT: True})`, the same line: for a line the
    caller vouches holds no personal data, written on every request (the access log). Where the line
    would reach only the process's own handler (`configure_logging`), it is formatted and written
    straight there, without a LogRecord or the logging call chain (a third of the line's cost in a
    service); under any other set-up (a test's capture, another handler) it goes through `logger.log`."""
    if not logger.isEnabledFor(level):
        return
    handler = _process_handler
    if handler is None or not _reaches_only(logger, handler, level):
        logger.log(level, message, extra={**fields, PLAIN_TEXT: True})
        return
    formatter = handler.formatter
    assert isinstance(formatter, JsonFormatter)
    line = formatter.line(
        time.time(),
        logging.getLevelName(level),
        logger.name,
        current_request_id() or "-",
        message,
        fields,
        plain=True,
    )
    handler.write_line(json.dumps(line, ensure_ascii=False))


def _reaches_only(logger: logging.Logger, handler: logging.Handler, level: int) -> bool:
    """Whether a `level` record of `logger` would be written by `handler` alone, unfiltered but for the
    masking filter (which a plain line skips)."""
    if logger.filters or handler.level > level:
        return False
    node: logging.Logger | None = logger
    while node is not None and node.parent is not None:  # up to the root, whose handlers are checked below
        if node.handlers or not node.propagate:
            return False
        node = node.parent
    root = logging.getLogger()
    return root.handlers == [handler] and all(isinstance(f, MaskingFilter) for f in handler.filters)


def configure_logging(
    service_name: str,
    level: str = "INFO",
    *,
    log_file: Path | None = None,
    max_bytes: int = 10_000_000,
    backups: int = 3,
) -> None:
    """JSON lines for this process, uvicorn's loggers included (they otherwise keep their own).

    On stderr, or into `log_file`, rotated at `max_bytes` with `backups` older files kept
    (`gateway.log.1`, ...), so a system left running never fills the disk.
    """
    global _process_handler
    handler = (
        RotatingLogFile(log_file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        if log_file
        else JsonLines(sys.stderr)
    )
    handler.addFilter(MaskingFilter())
    handler.setFormatter(JsonFormatter(service_name))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    _process_handler = handler
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    # httpx logs every call at INFO with its full URL (query string included): our access log says
    # what matters, once, without the query.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Our lines carry no caller, thread or process fields: skip collecting them for every record (the
    # logging HOWTO's "Optimization"; finding the caller walks the stack on each access-log line).
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False


def configure_process_logging(settings: ServiceSettings) -> None:
    """Logging as a process's settings say (level, file, cap); tests keep pytest's own capture."""
    if settings.environment == "test":
        return
    configure_logging(
        settings.service_name,
        settings.log_level,
        log_file=settings.log_file,
        max_bytes=settings.log_max_bytes,
        backups=settings.log_backups,
    )
