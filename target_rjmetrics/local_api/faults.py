"""Fault injection for the local Import API: settings and the seeded decision maker.

Faults apply to the real API endpoints only (status, authenticate, upsert), never to
``/_local``. Every API request draws the same five numbers from one seeded
``random.Random`` in arrival order, whatever the rates are, so a run is reproducible
under its seed and changing one rate does not shift the draws of another. The hostile
faults (below) draw four more numbers per request from a second generator seeded from the
same seed, so adding them left the sequences of the first five unchanged.

Order in which a request meets the faults (the first that applies answers it)::

    body over max_body_bytes  -> 413 (before the body is read)
    in flight > max_in_flight -> 429 + Retry-After (immediately, no latency)
    latency_ms + jitter       -> sleep, then:
    drop_rate                 -> connection closed without an answer
    fail_after reached        -> fail_status (503)
    rate_limit_rate           -> 429 + Retry-After
    error_rate                -> one of error_statuses
    (API key 401, table name and body 400: the real checks)
    hostile faults            -> on requests that would otherwise succeed:
        ghost                 -> upsert stored late; answer held, dropped or a 5xx
        upsert_status         -> upsert answered e.g. 200/204/302 instead of 201
        authenticate_status   -> authenticate answered e.g. 204/302 instead of 200
        trickle               -> whatever answer it gets is sent one byte at a time

A faulted request changes nothing in storage, except a trickled upsert (stored before its
201 starts to trickle) and a ghost (stored ``ghost_delay`` seconds after it arrived).

Which requests a hostile fault hits (``X`` is ``upsert_status``, ``authenticate_status``,
``trickle`` or ``ghost``; the fault is off while ``X``'s main field is null):
requests are counted when they reach the hostile stage (they passed every check above);
only upserts of ``X_table`` count when it is set; the first ``X_skip`` counted pass; of the
rest, each is hit with probability ``X_rate`` (seeded; 1.0 hits all) until ``X_count``
have been hit (null: no limit). Giving any ``X_*`` field to ``set_faults`` restarts that
fault's count.
"""

from __future__ import annotations

import dataclasses
import math
import random
import re
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

#: The contract's body limit (5 MiB); ``Faults.max_body_bytes`` can lower it.
CONTRACT_MAX_BODY_BYTES = 5 * 1024 * 1024

#: The hostile faults, each with selection fields ``<name>_rate``, ``_skip``, ``_count``.
HOSTILE_FAULTS = ("upsert_status", "authenticate_status", "trickle", "ghost")
#: Hostile faults that only hit upserts, and so have a ``<name>_table`` field.
_TABLE_FAULTS = ("upsert_status", "trickle", "ghost")
#: The field that switches each hostile fault on (off while null).
_SWITCH = {
    "upsert_status": "upsert_status",
    "authenticate_status": "authenticate_status",
    "trickle": "trickle_interval",
    "ghost": "ghost_delay",
}
#: Statuses a hostile fault may answer instead of 201 (upsert) or 200 (authenticate).
SUBSTITUTE_STATUSES = (200, 201, 202, 203, 204, 301, 302, 303, 307, 308)
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
#: Upper bounds that keep a misconfigured fault from pinning a thread for hours.
MAX_TRICKLE_INTERVAL_S = 60.0
MAX_GHOST_SECONDS = 3600.0
GHOST_ANSWERS = ("hold", "drop")
_ERROR_STATUSES = range(400, 600)
_SERVER_ERROR_STATUSES = range(500, 600)

_RATE_FIELDS = ("error_rate", "rate_limit_rate", "drop_rate", *tuple(f"{name}_rate" for name in HOSTILE_FAULTS))
_NON_NEGATIVE_FLOATS = ("latency_ms", "jitter_ms")
_INT_FIELDS = ("seed", "retry_after", "max_body_bytes", "fail_status")
_OPTIONAL_INT_FIELDS = ("max_in_flight", "fail_after", *tuple(f"{name}_count" for name in HOSTILE_FAULTS))
_NON_NEGATIVE_INT_FIELDS = tuple(f"{name}_skip" for name in HOSTILE_FAULTS)
_TABLE_PATTERN = re.compile(r"[A-Za-z0-9_]+")


def fault_of_field(name: str) -> str | None:
    """Return the hostile fault a ``Faults`` field belongs to, or None."""
    for fault in HOSTILE_FAULTS:
        if name == fault or name.startswith(fault + "_"):
            return fault
    return None


@dataclass(frozen=True)
class Faults:
    """Fault settings of one server instance (immutable; change them with ``set_faults``).

    Attributes:
        seed: Seed of the random generator that decides which requests are faulted.
        error_rate: Fraction of API requests answered with a status from ``error_statuses``.
        error_statuses: The 5xx statuses ``error_rate`` picks from (seeded choice).
        rate_limit_rate: Fraction of API requests answered 429 with ``Retry-After``.
        retry_after: Value in seconds of the ``Retry-After`` header of every 429 (0 allowed).
        latency_ms: Delay added before every API request is answered.
        jitter_ms: Upper bound of a uniform random delay added to ``latency_ms``.
        drop_rate: Fraction of API requests whose connection is closed without an answer.
        max_in_flight: Requests in flight beyond this number get 429; ``None`` is no limit.
        max_body_bytes: Bodies larger than this get 413 (the contract's 5 MiB by default).
        fail_after: After this many accepted upserts (counted from when it was set), every
            API request gets ``fail_status``; ``None`` disables it.
        fail_status: Status answered once ``fail_after`` is reached.
        upsert_status: Answer selected valid upserts with this status instead of 201 and
            store nothing (200, 202, 203, 204, or a redirect 301/302/303/307/308 with a
            ``Location``); ``None`` is off.
        upsert_status_rate: Probability that a counted upsert is hit (seeded).
        upsert_status_skip: Counted upserts let through before any is hit.
        upsert_status_count: At most this many upserts are hit; ``None`` is no limit.
        upsert_status_table: Count only upserts of this table; ``None`` is every table.
        authenticate_status: Answer selected valid authenticate requests with this status
            instead of 200 (201, 202, 203, 204 or a redirect); ``None`` is off.
        authenticate_status_rate: Probability that a counted authenticate is hit.
        authenticate_status_skip: Counted authenticate requests let through first.
        authenticate_status_count: At most this many are hit; ``None`` is no limit.
        redirect_url: Base of the ``Location`` of redirects: the request's path and query
            (``apikey`` included) are appended; ``None`` redirects to this server itself
            with a relative ``Location``.
        trickle_interval: Seconds between the bytes of a selected answer (status line,
            headers and body sent one byte at a time); ``None`` is off.
        trickle_rate: Probability that a counted upsert's answer is trickled.
        trickle_skip: Counted upserts answered normally first.
        trickle_count: At most this many answers are trickled; ``None`` is no limit.
        trickle_table: Count only upserts of this table; ``None`` is every table.
        trickle_authenticate: Also trickle every answer to a valid authenticate request.
        ghost_delay: Store a selected upsert's points this many seconds after it arrived,
            in the background, whatever was stored meanwhile, instead of storing it
            now; ``None`` is off.
        ghost_answer: What the client of a ghost sees: ``"hold"`` (no answer until it
            gives up, at most ``ghost_hold_max`` seconds, then 504), ``"drop"`` (the
            connection is closed at once) or a 5xx status answered at once.
        ghost_hold_max: Longest a held ghost waits for its client to give up.
        ghost_rate: Probability that a counted upsert becomes a ghost.
        ghost_skip: Counted upserts stored normally first.
        ghost_count: At most this many ghosts; ``None`` is no limit.
        ghost_table: Count only upserts of this table; ``None`` is every table.
    """

    seed: int = 0
    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = (500, 502, 503, 504)
    rate_limit_rate: float = 0.0
    retry_after: int = 1
    latency_ms: float = 0
    jitter_ms: float = 0
    drop_rate: float = 0.0
    max_in_flight: int | None = None
    max_body_bytes: int = CONTRACT_MAX_BODY_BYTES
    fail_after: int | None = None
    fail_status: int = 503
    upsert_status: int | None = None
    upsert_status_rate: float = 1.0
    upsert_status_skip: int = 0
    upsert_status_count: int | None = None
    upsert_status_table: str | None = None
    authenticate_status: int | None = None
    authenticate_status_rate: float = 1.0
    authenticate_status_skip: int = 0
    authenticate_status_count: int | None = None
    redirect_url: str | None = None
    trickle_interval: float | None = None
    trickle_rate: float = 1.0
    trickle_skip: int = 0
    trickle_count: int | None = None
    trickle_table: str | None = None
    trickle_authenticate: bool = False
    ghost_delay: float | None = None
    ghost_answer: str | int = "hold"
    ghost_hold_max: float = 60.0
    ghost_rate: float = 1.0
    ghost_skip: int = 0
    ghost_count: int | None = None
    ghost_table: str | None = None

    def __post_init__(self) -> None:
        """Validate every field so a bad setting fails where it is made.

        Raises:
            ValueError: A field has the wrong type or is out of range (a wrong type too: every
                bad setting is one kind of error, a 400 to ``PUT /_local/faults``, exit 2 of the CLI).
        """
        self._validate_numbers()
        self._validate_statuses()
        self._validate_substitutes()
        self._validate_trickle_and_ghost()

    def _validate_numbers(self) -> None:
        for name in _RATE_FIELDS:
            value = _number(name, getattr(self, name))
            if not 0.0 <= value <= 1.0:
                msg = f"{name} must be between 0 and 1, got {value!r}"
                raise ValueError(msg)
        for name in _NON_NEGATIVE_FLOATS:
            if _number(name, getattr(self, name)) < 0:
                msg = f"{name} must not be negative"
                raise ValueError(msg)
        for name in _INT_FIELDS:
            _integer(name, getattr(self, name))
        for name in _OPTIONAL_INT_FIELDS:
            value = getattr(self, name)
            if value is not None and _integer(name, value) < 0:
                msg = f"{name} must be a non-negative integer or null"
                raise ValueError(msg)
        if self.retry_after < 0 or self.max_body_bytes < 0:
            msg = "retry_after and max_body_bytes must not be negative"
            raise ValueError(msg)

    def _validate_statuses(self) -> None:
        if self.fail_status not in _ERROR_STATUSES:
            msg = f"fail_status must be a 4xx or 5xx status, got {self.fail_status}"
            raise ValueError(msg)
        statuses: object = self.error_statuses  # from JSON or a caller: anything
        if isinstance(statuses, (str, bytes)) or not isinstance(statuses, (tuple, list)):
            msg = "error_statuses must be a list of 5xx statuses"
            raise ValueError(msg)
        statuses = tuple(_integer("error_statuses", s) for s in statuses)
        if not statuses or any(s not in _SERVER_ERROR_STATUSES for s in statuses):
            msg = "error_statuses must be a non-empty list of 5xx statuses"
            raise ValueError(msg)
        object.__setattr__(self, "error_statuses", statuses)

    def _validate_substitutes(self) -> None:
        for name in _NON_NEGATIVE_INT_FIELDS:
            if _integer(name, getattr(self, name)) < 0:
                msg = f"{name} must be a non-negative integer"
                raise ValueError(msg)
        for name in ("upsert_status", "authenticate_status"):
            value = getattr(self, name)
            if value is None:
                continue
            normal = HTTPStatus.CREATED if name == "upsert_status" else HTTPStatus.OK
            allowed = [s for s in SUBSTITUTE_STATUSES if s != normal]
            if _integer(name, value) not in allowed:
                listed = ", ".join(str(s) for s in allowed)
                msg = f"{name} must be one of {listed} (or null), got {value}"
                raise ValueError(msg)
        for fault in _TABLE_FAULTS:
            name = f"{fault}_table"
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not _TABLE_PATTERN.fullmatch(value)):
                msg = f"{name} must be a table name (letters, digits, underscore) or null"
                raise ValueError(msg)
        url = self.redirect_url
        if url is not None:
            parts = urlsplit(url) if isinstance(url, str) else None
            if (
                parts is None
                or parts.scheme not in ("http", "https")
                or not parts.netloc
                or parts.query
                or parts.fragment
            ):
                msg = "redirect_url must be an http(s) URL without query or fragment, or null"
                raise ValueError(msg)

    def _validate_trickle_and_ghost(self) -> None:
        if self.trickle_interval is not None:
            value = _number("trickle_interval", self.trickle_interval)
            if not 0 < value <= MAX_TRICKLE_INTERVAL_S:
                msg = f"trickle_interval must be above 0 and at most {MAX_TRICKLE_INTERVAL_S:g} s"
                raise ValueError(msg)
        trickle_authenticate: object = self.trickle_authenticate  # from JSON or a caller: anything
        if not isinstance(trickle_authenticate, bool):
            msg = "trickle_authenticate must be true or false"
            raise ValueError(msg)
        if self.ghost_delay is not None:
            value = _number("ghost_delay", self.ghost_delay)
            if not 0 <= value <= MAX_GHOST_SECONDS:
                msg = f"ghost_delay must be between 0 and {MAX_GHOST_SECONDS:g} s"
                raise ValueError(msg)
        if not 0 < _number("ghost_hold_max", self.ghost_hold_max) <= MAX_GHOST_SECONDS:
            msg = f"ghost_hold_max must be above 0 and at most {MAX_GHOST_SECONDS:g} s"
            raise ValueError(msg)
        answer = self.ghost_answer
        if isinstance(answer, str):
            valid = answer in GHOST_ANSWERS
        else:
            valid = _integer("ghost_answer", answer) in _SERVER_ERROR_STATUSES
        if not valid:
            msg = f'ghost_answer must be "hold", "drop" or a 5xx status, got {answer!r}'
            raise ValueError(msg)

    def replace(self, **changes: Any) -> Faults:  # noqa: ANN401 (fields of several types)
        """Return a copy with ``changes`` applied.

        Raises:
            ValueError: An unknown field name or an invalid value.
        """
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            msg = f"unknown fault setting(s): {', '.join(unknown)}"
            raise ValueError(msg)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a JSON-serialisable dict."""
        data = dataclasses.asdict(self)
        data["error_statuses"] = list(self.error_statuses)
        return data


def _hostile_rng(seed: int) -> random.Random:
    # A second stream from the same seed: the first five draws per request stay as they were.
    return random.Random(f"hostile-faults:{seed}")


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = f"{name} must be a number, got {value!r}"
        raise ValueError(msg)
    if not math.isfinite(value):
        msg = f"{name} must be finite"
        raise ValueError(msg)
    return float(value)


def _integer(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"{name} must be an integer, got {value!r}"
        raise ValueError(msg)
    return value


@dataclass(frozen=True)
class Decision:
    """What the seeded draws decided for one request, applied once its body is in.

    Attributes:
        faults: The settings in force at the request's arrival.
        delay_s: Latency to add, in seconds.
        drop: Close the connection without an answer.
        rate_limited: Answer 429.
        error_status: Answer this 5xx, or ``None``.
        over_in_flight: More requests were in flight at arrival than allowed.
        hostile_draws: One uniform number per hostile fault (``HOSTILE_FAULTS`` order),
            compared with its rate if the request reaches the hostile stage.
    """

    faults: Faults
    delay_s: float = 0.0
    drop: bool = False
    rate_limited: bool = False
    error_status: int | None = None
    over_in_flight: bool = False
    hostile_draws: tuple[float, ...] = (1.0,) * len(HOSTILE_FAULTS)


@dataclass
class FaultInjector:
    """Thread-safe owner of the fault settings, the seeded generator and the accept count."""

    faults: Faults = field(default_factory=Faults)

    def __post_init__(self) -> None:
        """Seed the generator and set up the lock guarding all mutable state."""
        self._lock = threading.Lock()
        self._rng = random.Random(self.faults.seed)
        self._hostile_rng = _hostile_rng(self.faults.seed)
        self._accepted_since_set = 0
        # Per hostile fault: [requests counted, requests hit] since its fields were last set.
        self._selection = {name: [0, 0] for name in HOSTILE_FAULTS}

    def current(self) -> Faults:
        """Return the settings in force."""
        with self._lock:
            return self.faults

    def set(
        self,
        faults: Faults,
        *,
        reseed: bool,
        reset_fail_after: bool,
        reset_selection: frozenset[str] = frozenset(),
    ) -> None:
        """Install new settings."""
        with self._lock:
            self.faults = faults
            if reseed:
                self._rng = random.Random(faults.seed)
                self._hostile_rng = _hostile_rng(faults.seed)
            if reset_fail_after:
                self._accepted_since_set = 0
            for name in reset_selection:
                self._selection[name] = [0, 0]

    def draw(self, in_flight: int) -> Decision:
        """Decide the faults of one API request; call in arrival order."""
        with self._lock:
            f = self.faults
            u_drop, u_limit, u_error, u_pick, u_jitter = (self._rng.random() for _ in range(5))
            hostile = tuple(self._hostile_rng.random() for _ in HOSTILE_FAULTS)
        return Decision(
            faults=f,
            delay_s=(f.latency_ms + u_jitter * f.jitter_ms) / 1000.0,
            drop=u_drop < f.drop_rate,
            rate_limited=u_limit < f.rate_limit_rate,
            error_status=(
                f.error_statuses[min(int(u_pick * len(f.error_statuses)), len(f.error_statuses) - 1)]
                if u_error < f.error_rate
                else None
            ),
            over_in_flight=f.max_in_flight is not None and in_flight > f.max_in_flight,
            hostile_draws=hostile,
        )

    def select(self, decision: Decision, table: str | None) -> tuple[frozenset[str], Faults]:
        """Count one request reaching the hostile stage and return the faults that hit it."""
        names = _TABLE_FAULTS if table is not None else ("authenticate_status",)
        hits: set[str] = set()
        with self._lock:
            f = self.faults
            for name in names:
                if getattr(f, _SWITCH[name]) is None:
                    continue
                wanted = getattr(f, f"{name}_table", None)
                if wanted is not None and wanted != table:
                    continue
                counts = self._selection[name]
                counts[0] += 1
                if counts[0] <= getattr(f, f"{name}_skip"):
                    continue
                limit = getattr(f, f"{name}_count")
                if limit is not None and counts[1] >= limit:
                    continue
                if decision.hostile_draws[HOSTILE_FAULTS.index(name)] < getattr(f, f"{name}_rate"):
                    counts[1] += 1
                    hits.add(name)
        return frozenset(hits), f

    def fail_after_reached(self) -> bool:
        """Return True once ``fail_after`` upserts have been accepted."""
        with self._lock:
            limit = self.faults.fail_after
            return limit is not None and self._accepted_since_set >= limit

    def try_accept(self) -> bool:
        """Count one upsert as accepted unless ``fail_after`` forbids it (atomic)."""
        with self._lock:
            limit = self.faults.fail_after
            if limit is not None and self._accepted_since_set >= limit:
                return False
            self._accepted_since_set += 1
            return True

    def unaccept(self) -> None:
        """Take back a ``try_accept`` whose write then failed."""
        with self._lock:
            self._accepted_since_set -= 1
