"""Staying up under ESP faults: which errors to retry, when, how fast, and through whom.

Mechanisms only (no database): queued sending (``sending.services``) and the
routing backend decide with them.

* ``classify_failure`` tells a transient failure (timeout, connection error,
  HTTP 429 or 5xx) from a permanent one (validation, auth), and reads the
  ESP's ``Retry-After``.
* ``retry_delay`` is exponential backoff with full jitter.
* ``throttle`` keeps each ESP under its messages-per-second limit, shared by
  every worker through Redis when there is one, in-process otherwise.
* ``esp_health`` tracks each ESP's recent error rate, so the routing backend
  can skip an ESP that is failing.

Settings are ``MAILHUB["QUEUE"][...]``, each with the default below, read
when used (so ``override_settings`` works).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from django.conf import settings
from django.core.signals import setting_changed

from .exceptions import AnymailAPIError, AnymailConfigurationError
from .utils import UNSET

logger = logging.getLogger(__name__)

#: MAILHUB["QUEUE"] keys and their defaults.
QUEUE_DEFAULTS: dict[str, Any] = {
    # The backend queued messages are sent through (sending.backends.queued).
    "BACKEND": "sending.backends.sandbox.EmailBackend",
    # ESP calls per message before it is marked failed (the first try included).
    "MAX_ATTEMPTS": 8,
    # Backoff: the n-th retry waits up to BACKOFF_BASE * 2**(n-1) seconds, at most BACKOFF_MAX.
    "BACKOFF_BASE": 2.0,
    "BACKOFF_MAX": 600.0,
    # "full" (a random wait between 0 and the backoff) or "none" (the backoff itself).
    "JITTER": "full",
    # A Retry-After longer than this (seconds) is cut to it.
    "RETRY_AFTER_MAX": 3600.0,
    # Retry a read timeout (the ESP may have taken the message) even when the ESP
    # accepts no idempotency key. False marks such a message "unknown" instead.
    "RETRY_AMBIGUOUS": True,
    # Messages per second per ESP key, e.g. {"mailgun": 50}; applies to every send.
    "RATE_LIMITS": {},
    # Requests a rate-limited ESP may take at once before the limit applies.
    "RATE_BURST": 1,
    # Redis for the shared rate limits and ESP health ("" uses the Celery broker
    # when it is Redis; otherwise each process keeps its own).
    "REDIS_URL": "",
    # Failover (sending.backends.routing): the backends to try, in order.
    "FAILOVER_BACKENDS": [],
    # An ESP is unhealthy when, over the last HEALTH_WINDOW seconds, at least
    # HEALTH_MIN_CALLS calls were made and UNHEALTHY_ERROR_RATE of them failed.
    "HEALTH_WINDOW": 60.0,
    "HEALTH_MIN_CALLS": 10,
    "UNHEALTHY_ERROR_RATE": 0.5,
    # Sweep (manage.py sweep_sending, and the periodic task): a message "sending"
    # for longer than STUCK_AFTER seconds was left by a crash; a queued message
    # whose task hasn't started QUEUED_LOST_AFTER seconds after it was due is
    # handed to a worker again (at most SWEEP_BATCH of each per run).
    "STUCK_AFTER": 600.0,
    "QUEUED_LOST_AFTER": 300.0,
    "SWEEP_BATCH": 1000,
}


def queue_setting(name: str) -> Any:
    """Return MAILHUB["QUEUE"][name], or its default."""
    queue = (getattr(settings, "MAILHUB", None) or {}).get("QUEUE") or {}
    value = queue.get(name, UNSET)
    if value is UNSET:
        try:
            return QUEUE_DEFAULTS[name]
        except KeyError:
            raise AnymailConfigurationError(
                f'Unknown setting MAILHUB["QUEUE"]["{name}"].'
            ) from None
    return value


def broker_configured() -> bool:
    """Whether a Celery broker is set (otherwise queued messages are sent inline)."""
    return bool(getattr(settings, "CELERY_BROKER_URL", ""))


# Seams for tests: a fake clock and sleep, and the jitter's random source.
monotonic = time.monotonic
sleep = time.sleep
uniform = random.uniform


# ---------------------------------------------------------------------------
# Transient or permanent


@dataclass(frozen=True)
class SendFailure:
    """What a send error means for retrying."""

    transient: bool
    #: The ESP may have taken the message (a read timeout): retrying can send it twice.
    ambiguous: bool = False
    #: Seconds the ESP asked us to wait (Retry-After on 429 and 503), if it did.
    retry_after: float | None = None


#: HTTP statuses worth retrying: the ESP is overloaded, rate limiting or down.
TRANSIENT_STATUS_CODES = frozenset({408, 425, 429, 500, 502, 503, 504})


def classify_failure(error: BaseException) -> SendFailure:
    """Tell whether error is worth retrying (timeouts, connection errors, 429, 5xx)."""
    if not isinstance(error, AnymailAPIError):
        # Invalid addresses, unsupported features, refused recipients: the same
        # message would fail the same way.
        return SendFailure(transient=False)
    status = error.status_code
    if status is not None:
        try:
            status = int(status)
        except (TypeError, ValueError):
            status = None
    if status is not None:
        transient = status in TRANSIENT_STATUS_CODES or 500 <= status <= 599
        retry_after = None
        if status in (429, 503):
            retry_after = retry_after_seconds(getattr(error, "response", None))
        return SendFailure(transient=transient, retry_after=retry_after)
    for cause in _causes(error):
        if isinstance(cause, (requests.exceptions.ConnectTimeout, *_botocore_connect_errors())):
            return SendFailure(transient=True)  # never reached the ESP
        if isinstance(cause, (requests.exceptions.Timeout, *_botocore_read_timeouts())):
            return SendFailure(transient=True, ambiguous=True)
        if isinstance(cause, (requests.exceptions.ConnectionError, *_botocore_connection_errors())):
            # The connection dropped: the request may or may not have arrived.
            return SendFailure(transient=True, ambiguous=True)
    # An API error with no status and no network cause (an unparsable answer):
    # the ESP did answer, so it may have taken the message.
    return SendFailure(transient=False)


def _causes(error: BaseException) -> list[BaseException]:
    causes = []
    cause = error.__cause__ or error.__context__
    while cause is not None and len(causes) < 5:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    return causes


def _botocore(names: tuple[str, ...]) -> tuple[type, ...]:
    try:
        from botocore import exceptions
    except ImportError:
        return ()
    return tuple(getattr(exceptions, name) for name in names)


def _botocore_connect_errors() -> tuple[type, ...]:
    return _botocore(("ConnectTimeoutError", "EndpointConnectionError"))


def _botocore_read_timeouts() -> tuple[type, ...]:
    return _botocore(("ReadTimeoutError",))


def _botocore_connection_errors() -> tuple[type, ...]:
    return _botocore(("ConnectionError", "HTTPClientError"))


def retry_after_seconds(response: Any) -> float | None:
    """Seconds from a response's Retry-After header (delta-seconds or an HTTP-date)."""
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    value = headers.get("Retry-After")
    if not value:
        return None
    value = str(value).strip()
    try:
        seconds = float(value)
    except ValueError:
        # RFC 9110 section 10.2.3: Retry-After = HTTP-date / delay-seconds
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(tz=UTC)).total_seconds()
    return max(0.0, seconds)


def retry_delay(*, attempt: int, failure: SendFailure) -> float:
    """Seconds to wait before retrying after `attempt` failed calls.

    Exponential backoff with full jitter (a random wait between 0 and
    BACKOFF_BASE * 2**(attempt-1), capped at BACKOFF_MAX), so workers
    that failed together don't retry together. The ESP's Retry-After is a
    floor: never retry sooner than it asked.
    """
    base = float(queue_setting("BACKOFF_BASE"))
    backoff = min(float(queue_setting("BACKOFF_MAX")), base * 2 ** max(0, attempt - 1))
    jitter = queue_setting("JITTER")
    if jitter == "full":
        delay = uniform(0, backoff)
    elif jitter == "none":
        delay = backoff
    else:
        raise AnymailConfigurationError(
            f'MAILHUB["QUEUE"]["JITTER"] must be "full" or "none", not {jitter!r}.'
        )
    if failure.retry_after is not None:
        delay = max(delay, min(failure.retry_after, float(queue_setting("RETRY_AFTER_MAX"))))
    return delay


# ---------------------------------------------------------------------------
# Shared state: Redis when there is one, this process otherwise

_redis_lock = threading.Lock()
_redis_client: Any = UNSET
_redis_down_until = 0.0
REDIS_RETRY_AFTER = 5.0  # seconds to use in-process state after Redis fails


def redis_url() -> str:
    url = queue_setting("REDIS_URL")
    if url:
        return url
    broker = getattr(settings, "CELERY_BROKER_URL", "") or ""
    return broker if broker.startswith(("redis://", "rediss://", "unix://")) else ""


def shared_redis() -> Any:
    """A Redis client for state shared by all workers, or None (in-process state)."""
    global _redis_client
    if monotonic() < _redis_down_until:
        return None
    with _redis_lock:
        if _redis_client is UNSET:
            url = redis_url()
            if url:
                import redis

                _redis_client = redis.Redis.from_url(
                    url, socket_timeout=0.5, socket_connect_timeout=0.5
                )
            else:
                _redis_client = None
        return _redis_client


def _redis_failed(error: Exception) -> None:
    """Fall back to in-process state for a few seconds: Redis is part of the fault model."""
    global _redis_down_until
    _redis_down_until = monotonic() + REDIS_RETRY_AFTER
    logger.warning("mailhub: Redis unavailable (%s); using in-process limits for now", error)


def reset_shared_state(**_kwargs: Any) -> None:
    """Forget the Redis client and every in-process limit and health record."""
    global _redis_client, _redis_down_until
    _redis_client = UNSET
    _redis_down_until = 0.0
    _limiter.reset()
    esp_health.reset()


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("MAILHUB", "CELERY_BROKER_URL"):
        reset_shared_state()


setting_changed.connect(_on_setting_changed)


# ---------------------------------------------------------------------------
# Rate limits (GCRA: a token bucket kept as one timestamp)

# The "theoretical arrival time" of the next request, in microseconds of the
# Redis server's clock (one clock for every worker). Each call reserves a slot
# and returns how long to wait for it, so waiting workers never poll.
_GCRA_LUA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local ttl_ms = math.ceil((new_tat - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', string.format('%d', ttl_ms))
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
return string.format('%d', wait)
"""


class RateLimiter:
    """Messages per second per key, shared through Redis when available."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tat: dict[str, float] = {}
        self._script: Any = None
        self._script_client: Any = None

    def reset(self) -> None:
        with self._lock:
            self._tat.clear()
            self._script = self._script_client = None

    def reserve(self, key: str, rate: float, burst: int = 1) -> float:
        """Reserve the next slot for key; return the seconds to wait before using it."""
        interval = 1.0 / rate
        tolerance = interval * (max(1, burst) - 1)
        client = shared_redis()
        if client is not None:
            try:
                return self._reserve_redis(client, key, interval, tolerance)
            except Exception as error:  # redis.RedisError and socket errors
                _redis_failed(error)
        with self._lock:
            now = monotonic()
            tat = max(self._tat.get(key, now), now)
            self._tat[key] = tat + interval
            return max(0.0, tat - tolerance - now)

    def _reserve_redis(self, client: Any, key: str, interval: float, tolerance: float) -> float:
        if self._script is None or self._script_client is not client:
            self._script = client.register_script(_GCRA_LUA)
            self._script_client = client
        micros = self._script(
            keys=[f"mailhub:rate:{key}"],
            args=[int(interval * 1_000_000), int(tolerance * 1_000_000)],
        )
        return int(micros) / 1_000_000


_limiter = RateLimiter()


def throttle(esp: str, rate: float) -> float:
    """Wait until esp's rate limit (messages per second) allows one more; return the wait."""
    wait = _limiter.reserve(esp, float(rate), int(queue_setting("RATE_BURST")))
    if wait > 0:
        sleep(wait)
    return wait


# ---------------------------------------------------------------------------
# ESP health (error rate over a sliding window)

HEALTH_BUCKET = 5.0  # seconds per Redis counter bucket


class EspHealth:
    """Recent calls and failures per ESP; an ESP failing too often is unhealthy."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, deque[tuple[float, bool]]] = defaultdict(deque)

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()

    def record(self, esp: str, *, ok: bool) -> None:
        """Count one call to esp (ok=False: a transient failure)."""
        window = float(queue_setting("HEALTH_WINDOW"))
        client = shared_redis()
        if client is not None:
            try:
                bucket = int(time.time() // HEALTH_BUCKET)
                key = f"mailhub:health:{esp}:{bucket}"
                pipe = client.pipeline(transaction=False)
                pipe.hincrby(key, "calls", 1)
                if not ok:
                    pipe.hincrby(key, "errors", 1)
                pipe.expire(key, int(window + 2 * HEALTH_BUCKET))
                pipe.execute()
                return
            except Exception as error:  # redis.RedisError and socket errors
                _redis_failed(error)
        with self._lock:
            calls = self._calls[esp]
            calls.append((monotonic(), ok))
            self._prune(calls, window)

    def error_rate(self, esp: str) -> tuple[int, float]:
        """(calls, share of them that failed) over the health window."""
        window = float(queue_setting("HEALTH_WINDOW"))
        client = shared_redis()
        if client is not None:
            try:
                last = int(time.time() // HEALTH_BUCKET)
                first = last - int(window // HEALTH_BUCKET)
                pipe = client.pipeline(transaction=False)
                for bucket in range(first, last + 1):
                    pipe.hmget(f"mailhub:health:{esp}:{bucket}", "calls", "errors")
                calls = errors = 0
                for bucket_calls, bucket_errors in pipe.execute():
                    calls += int(bucket_calls or 0)
                    errors += int(bucket_errors or 0)
                return calls, (errors / calls if calls else 0.0)
            except Exception as error:  # redis.RedisError and socket errors
                _redis_failed(error)
        with self._lock:
            calls = self._calls[esp]
            self._prune(calls, window)
            failed = sum(1 for _, ok in calls if not ok)
            return len(calls), (failed / len(calls) if calls else 0.0)

    def is_healthy(self, esp: str) -> bool:
        calls, error_rate = self.error_rate(esp)
        return not (
            calls >= int(queue_setting("HEALTH_MIN_CALLS"))
            and error_rate >= float(queue_setting("UNHEALTHY_ERROR_RATE"))
        )

    @staticmethod
    def _prune(calls: deque[tuple[float, bool]], window: float) -> None:
        horizon = monotonic() - window
        while calls and calls[0][0] < horizon:
            calls.popleft()


esp_health = EspHealth()
