"""Keeping secrets out of everything shown: the API key, URL passwords, and the size of answers.

Every string that may carry a URL or an answer passes through :func:`redact` (or
:func:`redact_url`) before it is logged or raised; :func:`protect_library_logs` puts the
same filter on the HTTP libraries' own loggers, whose DEBUG lines print request URLs.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import quote, quote_plus

#: What is shown of an answer: each of the message and the reasons is cut to this length...
SHOWN_CHARS = 300

_APIKEY_PARAM = re.compile(r"(apikey=)[^&\s'\"]*", re.IGNORECASE)
# scheme://userinfo@ : the userinfo ends at the last "@" before the path, query or fragment.
_URL_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.\-]*://)[^/?#\s'\"<>]*@")


def redact_url(url: str) -> str:
    """Make a URL fit to show: its user and password, and any ``apikey`` value, become ``***``.

    Args:
        url: A URL, or any text that may hold URLs.

    Returns:
        The text with every ``scheme://user:password@`` reduced to ``scheme://***@`` and
        every ``apikey=`` value replaced.
    """
    return _APIKEY_PARAM.sub(r"\1***", _URL_USERINFO.sub(r"\1***@", url))


def redact(text: str, secret: str | None) -> str:
    """Remove an API key, and the user and password of any URL, from text.

    Args:
        text: Any text about to be logged or raised.
        secret: The API key.

    Returns:
        The text with the key (also URL-encoded), any ``apikey=`` query value and any URL
        userinfo replaced.
    """
    if secret:
        for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
            text = text.replace(form, "***")
    return redact_url(text)


def shorten(text: str, limit: int = SHOWN_CHARS) -> str:
    """Cut ``text`` to about ``limit`` characters, saying how much was cut.

    Args:
        text: Text from elsewhere (an API's answer, a library's error).
        limit: Characters kept.

    Returns:
        The text, or its first ``limit`` characters and how many more there were.
    """
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit:,} more characters)"


class RedactingFilter(logging.Filter):
    """Removes ``apikey=`` values and URL passwords from log records, e.g. urllib3's DEBUG lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message without secrets.

        Args:
            record: A log record.

        Returns:
            Always True: the record is kept, redacted.
        """
        message = record.getMessage()
        if "apikey" in message.lower() or "@" in message:
            record.msg = redact(message, None)
            record.args = None
        return True


#: Loggers of the HTTP libraries that can print a URL. A filter on a logger does not apply
#: to records of its children, so each one that logs is named.
_LIBRARY_LOGGERS = (
    "urllib3",
    "urllib3.connectionpool",
    "urllib3.connection",
    "urllib3.poolmanager",
    "urllib3.response",
    "urllib3.util.retry",
    "requests",
)


def protect_library_logs() -> None:
    """Make sure the HTTP libraries' own loggers can never print a URL with the key."""
    for name in _LIBRARY_LOGGERS:
        library_logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in library_logger.filters):
            library_logger.addFilter(RedactingFilter())
