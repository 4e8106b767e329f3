"""One scrubber keeps secrets out of everything the process shows.

The API key grants write access to a customer's warehouse, and ``api_url`` may carry a
password (``https://etl:PW@host/v2``). Guarding each log call would leave next year's message
unguarded, so the promise is kept in two places only:

- **every log record of the process**, whatever logger made it (ours, the SDK's,
  urllib3/requests, ``warnings``) and whatever handler writes it: :func:`install` wraps the
  record factory, so a record is scrubbed as it is made (its message and traceback), and puts
  :class:`ScrubbingFilter` on every handler already configured (the SDK's, a logging config's),
  which scrubs again what the factory cannot see: text added with ``extra=``, and records made
  some other way; on the command line, uncaught exceptions of any thread are logged, not printed;
- **foreign text where it enters our code**: the transport turns what the HTTP libraries raise
  into our errors through :meth:`Scrubber.scrub` (see :mod:`target_rjmetrics.outcomes`).

The scrubber is process-wide on purpose: the record factory and the exception hooks it serves
are. Secrets are only ever added to it (:meth:`Scrubber.learn`), as soon as the settings are read.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import traceback
import typing as t
from urllib.parse import quote, quote_plus, unquote, urlsplit

if t.TYPE_CHECKING:
    import types

#: What is shown of an answer: each of the message and the reasons is cut to this length...
SHOWN_CHARS = 300
#: A secret shorter than this is replaced only where it stands as a URL's key or password;
#: replacing it everywhere would garble unrelated text.
MIN_LITERAL_SECRET = 4
#: Replaces a secret.
MASK = "***"

_APIKEY_PARAM = re.compile(r"(apikey=)[^&#\s'\"<>(),;:]*", re.IGNORECASE)
# scheme://userinfo@ : the userinfo ends at the last "@" before the path, query or fragment.
_URL_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.\-]*://)[^/?#\s'\"<>]*@")
#: Attributes every LogRecord has: anything else was added with ``extra=`` and is scrubbed too.
_RECORD_FIELDS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def redact_url(url: str) -> str:
    """Make a URL fit to show: its user and password, and any ``apikey`` value, become ``***``."""
    if "@" in url:
        url = _URL_USERINFO.sub(rf"\1{MASK}@", url)
    if "apikey" in url or "APIKEY" in url.upper():
        url = _APIKEY_PARAM.sub(rf"\1{MASK}", url)
    return url


def shorten(text: str, limit: int = SHOWN_CHARS) -> str:
    """Cut ``text`` to about ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit:,} more characters)"


def _forms(secret: str) -> set[str]:
    """The ways a secret may be written in text: as is, URL-encoded, JSON- or repr-escaped."""
    forms = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret), json.dumps(secret)[1:-1]}
    forms.add(repr(secret)[1:-1])
    return {form for form in forms if len(form) >= MIN_LITERAL_SECRET}


class Scrubber:
    """Knows the secrets of this process and removes them from any text."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._forms: tuple[str, ...] = ()  # longest first, replaced as a whole tuple

    def learn(self, *, api_key: object = None, url: object = None) -> None:
        """Add an API key, and the password of a URL, to what is scrubbed."""
        secrets = []
        if isinstance(api_key, str) and api_key:
            secrets.append(api_key)
        if isinstance(url, str) and "@" in url:
            try:
                password = urlsplit(url.strip()).password
            except ValueError:  # not a URL that parses: its userinfo still goes by the pattern
                password = None
            if password:
                secrets += [password, unquote(password)]
        if not secrets:
            return
        with self._lock:
            forms = set(self._forms)
            for secret in secrets:
                forms |= _forms(secret)
            self._forms = tuple(sorted(forms, key=len, reverse=True))

    def scrub(self, text: str) -> str:
        """Remove every known secret, every ``apikey=`` value and every URL's userinfo from ``text``."""
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return redact_url(text)

    def scrub_record(self, record: logging.LogRecord) -> None:
        """Scrub a log record in place: its message, its traceback and the text it carries.

        A record whose text holds no secret is left as it is (a METRIC record keeps its
        point for the SDK's structured formatter). One that does gets its message written
        out, scrubbed, with its traceback, if any, appended as text.
        """
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 (a bad format: logging would print msg and args raw)
            message = f"{record.msg} {record.args!r}"
            record.args = None
        text = message
        exc_info = record.exc_info
        if exc_info and exc_info[0] is not None:
            text = f"{message}\n{''.join(traceback.format_exception(*exc_info)).rstrip()}"
        elif record.exc_text:
            text = f"{message}\n{record.exc_text}"
        if record.stack_info:
            text = f"{text}\n{record.stack_info}"
        scrubbed = self.scrub(text)
        if scrubbed != text:
            record.msg, record.args = scrubbed, None
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        for name, value in record.__dict__.items():
            if name not in _RECORD_FIELDS and isinstance(value, str):
                setattr(record, name, self.scrub(value))


#: The process's scrubber (see the module's docstring for why there is one).
SCRUBBER = Scrubber()


class ScrubbingFilter(logging.Filter):
    """Scrubs every record a handler is given (records made without the record factory too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Scrub the record."""
        SCRUBBER.scrub_record(record)
        return True


_installed = threading.Lock()
_factory_installed = False


def install() -> None:
    """Scrub every log record of the process from now on.

    Safe to call more than once: the record factory is wrapped once, and each handler gets one
    filter. Called as soon as the target is made (before its settings are checked, whose
    warnings may quote ``api_url``), after the SDK has configured logging, and by every client.
    """
    global _factory_installed  # noqa: PLW0603 (the record factory is the process's; wrap it once)
    with _installed:
        if not _factory_installed:
            _factory_installed = True
            previous = logging.getLogRecordFactory()

            def make_record(*args: t.Any, **kwargs: t.Any) -> logging.LogRecord:  # noqa: ANN401
                record = previous(*args, **kwargs)
                SCRUBBER.scrub_record(record)
                return record

            logging.setLogRecordFactory(make_record)
        for handler in _handlers():
            if not any(isinstance(f, ScrubbingFilter) for f in handler.filters):
                handler.addFilter(ScrubbingFilter())


def _handlers() -> list[logging.Handler]:
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    return [handler for lg in loggers for handler in lg.handlers]


_UNCAUGHT = logging.getLogger("target-rjmetrics")


def log_uncaught_exceptions() -> None:
    """Log, and so scrub, what Python would print of an uncaught exception (of any thread).

    For the command line only: embedded in another program (or a test), the hooks are its own.
    """
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
    sys.unraisablehook = _log_unraisable


def _log_uncaught(
    kind: type[BaseException], value: BaseException, tb: types.TracebackType | None
) -> None:  # pragma: no cover (only at interpreter level)
    if issubclass(kind, KeyboardInterrupt):
        return
    _UNCAUGHT.error("Uncaught %s", kind.__name__, exc_info=(kind, value, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    name = args.thread.name if args.thread is not None else "?"
    _UNCAUGHT.error(
        "Uncaught %s in thread %s",
        args.exc_type.__name__,
        name,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


def _log_unraisable(unraisable: t.Any) -> None:  # noqa: ANN401 (sys.UnraisableHookArgs)
    value = unraisable.exc_value
    if value is None:
        return
    _UNCAUGHT.debug(
        "Ignored %s: %s",
        type(value).__name__,
        unraisable.err_msg or "",
        exc_info=(type(value), value, value.__traceback__),
    )
