"""Structured logs: JSON lines whose identity numbers, phone numbers and names are masked."""

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from kit.logging import PLAIN_TEXT, JsonFormatter, MaskingFilter, configure_logging, log_plain, mask_text
from kit.requestid import set_request_id

NAME, ID_NUMBER, PHONE = "欧阳测试", "11010519491231002X", "13912345678"


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing through the production filter and formatter into a buffer."""
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    handler.addFilter(MaskingFilter())
    handler.setFormatter(JsonFormatter("registration"))
    logger = logging.getLogger("tests.masking")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, written
    logger.removeHandler(handler)


def lines(written: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in written.getvalue().splitlines()]


def test_each_line_is_json_with_service_level_logger_and_request_id(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, written = logged
    set_request_id("req-42")
    try:
        logger.warning("queue %s suspended", "internal", extra={"department": "internal"})
    finally:
        set_request_id(None)
    [line] = lines(written)
    assert line["service"] == "registration" and line["level"] == "WARNING"
    assert line["logger"] == "tests.masking" and line["request_id"] == "req-42"
    assert line["message"] == "queue internal suspended" and line["department"] == "internal"


def test_names_numbers_and_phones_are_masked_in_messages_extras_and_tracebacks(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, written = logged
    body = json.dumps({"name": NAME, "id_number": ID_NUMBER, "phone": PHONE}, ensure_ascii=False)
    logger.info("registered %s", body)
    logger.info("as a dict %s", {"patient_name": NAME, "note": f"call {PHONE}"})
    logger.info("extras", extra={"patient_name": NAME, "contact": {"full_name": NAME, "phone": PHONE}})
    try:
        raise ValueError(f"bad id {ID_NUMBER} for name: {body}")
    except ValueError:
        logger.exception("failed")
    text = written.getvalue()
    assert len(lines(written)) == 4
    for canary in (NAME, ID_NUMBER, PHONE):
        assert canary not in text
    assert "欧***" in text and "110105********002X" in text and "139****5678" in text


def test_name_pairs_keep_their_key_and_other_fields() -> None:
    masked = mask_text('{"name": "张三", "code": "WBC", "contact_name": "李四"}')
    assert masked == '{"name": "张**", "code": "WBC", "contact_name": "李**"}'


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        handler.close()
    root.handlers[:], root.level = handlers, level


@pytest.mark.usefixtures("restore_root_logging")
def test_a_log_file_is_rotated_at_its_size_cap(tmp_path: Path) -> None:
    log_file = tmp_path / "registration.log"
    configure_logging("registration", log_file=log_file, max_bytes=10_000, backups=2)
    logger = logging.getLogger("tests.rotation")
    for n in range(500):
        logger.info("line %d of a long-running service", n)
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["registration.log", "registration.log.1", "registration.log.2"]
    assert all(f.stat().st_size <= 10_000 for f in files)
    last = json.loads(log_file.read_text().splitlines()[-1])
    assert (last["service"], last["message"]) == ("registration", "line 499 of a long-running service")


@pytest.mark.usefixtures("restore_root_logging")
def test_a_log_file_formats_each_record_once(tmp_path: Path) -> None:
    """The standard rotating handler formats every record twice (once only to decide on rollover)."""
    configure_logging("registration", log_file=tmp_path / "registration.log", max_bytes=10_000)
    [handler] = logging.getLogger().handlers
    formatted: list[str] = []
    format_record = handler.format

    def counting_format(record: logging.LogRecord) -> str:
        formatted.append(record.getMessage())
        return format_record(record)

    handler.format = counting_format  # type: ignore[method-assign]
    logging.getLogger("tests.rotation").info("one line")
    assert formatted == ["one line"]


def test_plain_text_records_skip_masking_and_others_do_not(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, written = logged
    logger.info("GET %s 200", "/patients/{patient_id}", extra={"route": "/x", PLAIN_TEXT: True})
    logger.info("GET %s 200", f"/patients/{ID_NUMBER}", extra={"route": "/x"})
    plain, masked = lines(written)
    assert plain["message"] == "GET /patients/{patient_id} 200" and plain["route"] == "/x"
    assert PLAIN_TEXT not in plain  # the marker is not a field of the line
    assert ID_NUMBER not in str(masked["message"])


@pytest.mark.usefixtures("restore_root_logging")
def test_a_plain_line_written_straight_is_the_line_logging_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_file = tmp_path / "registration.log"
    configure_logging("registration", log_file=log_file)
    access = logging.getLogger("tests.access")
    handled: list[str] = []
    handle = logging.Logger.handle

    def noted(logger: logging.Logger, record: logging.LogRecord) -> None:
        handled.append(record.getMessage())
        handle(logger, record)

    monkeypatch.setattr(logging.Logger, "handle", noted)
    fields: dict[str, str | int | float] = {"method": "GET", "route": "/visits/{visit_id}", "status": 200}
    set_request_id("rid-plain")
    log_plain(access, logging.INFO, "GET /visits/{visit_id} 200", fields)  # straight to the file
    assert handled == []  # no record: the line went past logging's call chain
    second = logging.StreamHandler(io.StringIO())
    logging.getLogger().addHandler(second)  # now the line reaches two handlers: through logging
    log_plain(access, logging.INFO, "GET /visits/{visit_id} 200", fields)
    log_plain(access, logging.DEBUG, "not at this level", fields)
    assert handled == ["GET /visits/{visit_id} 200"]

    straight, logged = (json.loads(line) for line in log_file.read_text().splitlines())
    assert straight.pop("ts") and logged.pop("ts")
    assert (
        straight
        == logged
        == {
            "level": "INFO",
            "service": "registration",
            "logger": "tests.access",
            "request_id": "rid-plain",
            "message": "GET /visits/{visit_id} 200",
            **fields,
        }
    )
    assert second.stream.getvalue() == "GET /visits/{visit_id} 200\n"  # type: ignore[attr-defined]


@pytest.mark.usefixtures("restore_root_logging")
def test_a_plain_line_reaches_a_handler_of_its_own_logger(tmp_path: Path) -> None:
    configure_logging("registration", log_file=tmp_path / "registration.log")
    access = logging.getLogger("tests.access")
    written = io.StringIO()
    own = logging.StreamHandler(written)
    access.addHandler(own)
    try:
        log_plain(access, logging.INFO, "GET /x 200", {"route": "/x"})
    finally:
        access.removeHandler(own)
    assert written.getvalue() == "GET /x 200\n"
    assert "GET /x 200" in (tmp_path / "registration.log").read_text()


@pytest.mark.usefixtures("restore_root_logging")
def test_a_plain_line_that_cannot_be_written_is_reported_not_raised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("registration", log_file=tmp_path / "registration.log")
    [handler] = logging.getLogger().handlers
    assert isinstance(handler, logging.StreamHandler)

    class FullDisk(io.StringIO):
        def write(self, _text: str) -> int:
            raise OSError(28, "No space left on device")

    handler.setStream(FullDisk()).close()  # type: ignore[union-attr]  # the request must not fail for it

    log_plain(logging.getLogger("tests.access"), logging.INFO, "GET /y 200", {"route": "/y"})

    assert "Logging error" in capsys.readouterr().err  # as logging reports a failed emit
