"""Fault injection for the local Import API: settings and the seeded decision maker.

Faults apply to the real API endpoints only (status, authenticate, upsert), never to
``/_local``. Every API request draws the same five numbers from one seeded
``random.Random`` in arrival order, whatever the rates are, so a run is reproducible
under its seed and changing one rate does not shift the draws of another.

Order in which a request meets the faults (the first that applies answers it)::

    body over max_body_bytes  -> 413 (before the body is read)
    in flight > max_in_flight -> 429 + Retry-After (immediately, no latency)
    latency_ms + jitter       -> sleep, then:
    drop_rate                 -> connection closed without an answer
    fail_after reached        -> fail_status (503)
    rate_limit_rate           -> 429 + Retry-After
    error_rate                -> one of error_statuses

A faulted request changes nothing in storage.
"""

from __future__ import annotations

import dataclasses
import random
import threading
from dataclasses import dataclass, field
from typing import Any

#: The contract's body limit (5 MiB); ``Faults.max_body_bytes`` can lower it.
CONTRACT_MAX_BODY_BYTES = 5 * 1024 * 1024

_RATE_FIELDS = ("error_rate", "rate_limit_rate", "drop_rate")
_NON_NEGATIVE_FLOATS = ("latency_ms", "jitter_ms")
_INT_FIELDS = ("seed", "retry_after", "max_body_bytes", "fail_status")
_OPTIONAL_INT_FIELDS = ("max_in_flight", "fail_after")


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

    def __post_init__(self) -> None:
        """Validate every field so a bad setting fails where it is made.

        Raises:
            ValueError: A field has the wrong type or is out of range.
        """
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
        if not 400 <= self.fail_status <= 599:
            msg = f"fail_status must be a 4xx or 5xx status, got {self.fail_status}"
            raise ValueError(msg)
        statuses = self.error_statuses
        if isinstance(statuses, (str, bytes)) or not isinstance(statuses, (tuple, list)):
            msg = "error_statuses must be a list of 5xx statuses"
            raise ValueError(msg)
        statuses = tuple(_integer("error_statuses", s) for s in statuses)
        if not statuses or any(not 500 <= s <= 599 for s in statuses):
            msg = "error_statuses must be a non-empty list of 5xx statuses"
            raise ValueError(msg)
        object.__setattr__(self, "error_statuses", statuses)

    def replace(self, **changes: Any) -> Faults:
        """Return a copy with ``changes`` applied.

        Args:
            **changes: Field names and new values.

        Returns:
            The new, validated settings.

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


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = f"{name} must be a number, got {value!r}"
        raise ValueError(msg)
    if value != value or value in (float("inf"), float("-inf")):
        msg = f"{name} must be finite"
        raise ValueError(msg)
    return float(value)


def _integer(name: str, value: Any) -> int:
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
    """

    faults: Faults
    delay_s: float = 0.0
    drop: bool = False
    rate_limited: bool = False
    error_status: int | None = None
    over_in_flight: bool = False


@dataclass
class FaultInjector:
    """Thread-safe owner of the fault settings, the seeded generator and the accept count."""

    faults: Faults = field(default_factory=Faults)

    def __post_init__(self) -> None:
        """Seed the generator and set up the lock guarding all mutable state."""
        self._lock = threading.Lock()
        self._rng = random.Random(self.faults.seed)
        self._accepted_since_set = 0

    def current(self) -> Faults:
        """Return the settings in force."""
        with self._lock:
            return self.faults

    def set(self, faults: Faults, *, reseed: bool, reset_fail_after: bool) -> None:
        """Install new settings.

        Args:
            faults: The new settings.
            reseed: Restart the generator from ``faults.seed``.
            reset_fail_after: Restart the count of accepted upserts that ``fail_after`` uses.
        """
        with self._lock:
            self.faults = faults
            if reseed:
                self._rng = random.Random(faults.seed)
            if reset_fail_after:
                self._accepted_since_set = 0

    def draw(self, in_flight: int) -> Decision:
        """Decide the faults of one API request; call in arrival order.

        Args:
            in_flight: Requests in flight including this one.

        Returns:
            The decision, to be applied once the body has been read.
        """
        with self._lock:
            f = self.faults
            u_drop, u_limit, u_error, u_pick, u_jitter = (self._rng.random() for _ in range(5))
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
        )

    def fail_after_reached(self) -> bool:
        """Return True once ``fail_after`` upserts have been accepted."""
        with self._lock:
            limit = self.faults.fail_after
            return limit is not None and self._accepted_since_set >= limit

    def try_accept(self) -> bool:
        """Count one upsert as accepted unless ``fail_after`` forbids it (atomic).

        Returns:
            False when the upsert must be refused with ``fail_status``.
        """
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
