"""The one scrubber: every form of a secret, in any text, in every log record of the process."""

from __future__ import annotations

import io
import logging
import typing as t
import warnings

import pytest
from singer_sdk import metrics
from singer_sdk.logging import StructuredFormatter

from target_rjmetrics import redaction
from target_rjmetrics.redaction import SCRUBBER, Scrubber, redact_url

KEY = "rjm/Unit+K3y=secret"
PASSWORD = "pw:Q7x!r9"


@pytest.fixture
def scrubber() -> Scrubber:
    scrubber = Scrubber()
    scrubber.learn(api_key=KEY, url="https://etl:pw%3AQ7x%21r9@host.example/v2")
    return scrubber


@pytest.mark.parametrize(
    "text",
    [
        KEY,
        "rjm%2FUnit%2BK3y%3Dsecret",  # quote(safe="")
        "rjm/Unit%2BK3y%3Dsecret",  # quote()
        f"GET /v2/client/1/authenticate?apikey={KEY}&x=1 HTTP/1.1",
        PASSWORD,
        "pw%3AQ7x%21r9",
        "https://etl:pw%3AQ7x%21r9@host.example/v2",
        "proxy http://user:other-secret@proxy:3128 refused",
    ],
)
def test_no_form_of_a_secret_survives(scrubber: Scrubber, text: str) -> None:
    scrubbed = scrubber.scrub(f"before {text} after")
    for fragment in ("Unit", "K3y", "Q7x", "other-secret"):
        assert fragment not in scrubbed, scrubbed
    assert scrubbed.startswith("before ") and scrubbed.endswith(" after")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://u:p@h/v2/x?apikey=abc&y=1", "https://***@h/v2/x?apikey=***&y=1"),
        ("http://user:S3cretPass@127.0.0.1:8765/v2", "http://***@127.0.0.1:8765/v2"),
        (
            "see https://u:p%40ss@host/v2/client/1?apikey=abc&x=1 now",
            "see https://***@host/v2/client/1?apikey=***&x=1 now",
        ),
        ("https://user:p@ss@host/v2", "https://***@host/v2"),
        ("https://connect.rjmetrics.com/v2", "https://connect.rjmetrics.com/v2"),
        ("APIKEY=abc", "APIKEY=***"),
        ("no secret here: 1 row, 2 rows", "no secret here: 1 row, 2 rows"),
        ("mail me at a@b.example", "mail me at a@b.example"),
    ],
)
def test_urls_lose_their_userinfo_and_key_values(text: str, expected: str) -> None:
    assert redact_url(text) == expected
    assert Scrubber().scrub(text) == expected


def test_a_short_secret_is_replaced_only_where_it_stands_as_a_key_or_password() -> None:
    scrubber = Scrubber()
    scrubber.learn(api_key="abc", url="http://u:xy@h/v2")
    assert scrubber.scrub("abc def, apikey=abc") == "abc def, apikey=***"
    assert scrubber.scrub("http://u:xy@h/v2") == "http://***@h/v2"


def _capture(logger_name: str, handler_stream: io.StringIO) -> logging.Logger:
    logger = logging.getLogger(logger_name)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    handler = logging.StreamHandler(handler_stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s %(detail)s", defaults={"detail": ""}))
    logger.handlers = [handler]  # added after install(): covered by the record factory
    return logger


def test_every_record_of_every_logger_is_scrubbed_message_arguments_traceback_and_extras() -> None:
    redaction.install()
    SCRUBBER.learn(api_key=KEY)
    out = io.StringIO()
    logger = _capture("some.library.of.next.year", out)
    logger.warning("Retrying %s", f"https://h/v2/client/1/authenticate?apikey={KEY}")
    logger.debug("url=%(url)s", {"url": f"/x?apikey={KEY}"})
    try:
        raise ValueError(f"Max retries exceeded with url: /v2?apikey={KEY}")
    except ValueError:
        logger.exception("request failed")
    logger.info(KEY)  # a message that is the key itself, no arguments
    text = out.getvalue()
    assert "Unit" not in text and "K3y" not in text, text
    assert text.count("***") >= 4
    assert "ValueError" in text and "Traceback" in text, "the traceback should still be shown, scrubbed"


def test_warnings_are_scrubbed_once_routed_to_logging() -> None:
    redaction.install()
    SCRUBBER.learn(api_key=KEY)
    out = io.StringIO()
    _capture("py.warnings", out)
    logging.captureWarnings(capture=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn(f"insecure request to /x?apikey={KEY}", UserWarning, stacklevel=1)
    finally:
        logging.captureWarnings(capture=False)
    assert "insecure request" in out.getvalue()
    assert "Unit" not in out.getvalue()


def test_a_metric_record_without_secrets_keeps_its_point_for_structured_logs() -> None:
    redaction.install()
    out = io.StringIO()
    logger = _capture("singer_sdk.metrics.scrub-test", out)
    logger.handlers[0].setFormatter(StructuredFormatter())
    point = metrics.Point("counter", metrics.Metric.RECORD_COUNT, 3, {"table": "users"})
    metrics.log(logger, point)
    assert '"metric_info"' in out.getvalue()
    assert '"table":"users"' in out.getvalue()


def test_a_handler_configured_before_install_gets_the_filter_too() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        redaction.install()
        assert any(isinstance(f, redaction.ScrubbingFilter) for f in handler.filters)
        SCRUBBER.learn(api_key=KEY)
        record = logging.makeLogRecord({"msg": f"made elsewhere ?apikey={KEY}", "levelno": logging.ERROR})
        handler.handle(record)  # a record that never went through the record factory
        # Extras are set after the record factory ran: the handler's filter scrubs them.
        handler.setFormatter(logging.Formatter("%(message)s %(detail)s"))
        logging.getLogger("scrub-test-extras").error("with an extra", extra={"detail": f"key {KEY}"})
    finally:
        root.removeHandler(handler)
    assert "made elsewhere" in out.getvalue()
    assert "with an extra key ***" in out.getvalue()
    assert "Unit" not in out.getvalue()


def test_the_uncaught_exception_hooks_log_through_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    logged: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            logged.append(record)

    handler = Keep()
    logger = logging.getLogger("target-rjmetrics")
    logger.addHandler(handler)
    redaction.install()
    SCRUBBER.learn(api_key=KEY)
    import sys  # noqa: PLC0415
    import threading  # noqa: PLC0415

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)
    try:
        redaction.log_uncaught_exceptions()
        error = RuntimeError(f"boom ?apikey={KEY}")
        sys.excepthook(RuntimeError, error, None)
        args: t.Any = type(
            "Args", (), {"exc_type": RuntimeError, "exc_value": error, "exc_traceback": None, "thread": None}
        )
        threading.excepthook(args)
    finally:
        logger.removeHandler(handler)
    messages = [record.getMessage() for record in logged]
    assert len(messages) == 2, messages
    assert all("Unit" not in m and "RuntimeError" in m for m in messages), messages
