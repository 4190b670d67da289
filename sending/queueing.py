"""Queued sending: hand recorded messages to a worker, send them, retry, and sweep.

The queued backend (``sending.backends.queued``) records each message as
``queued`` and calls ``message_enqueue`` once the caller's transaction
commits. A worker (the ``mailhub.send_queued_message`` task, or this process
when no Celery broker is set) calls ``message_send_queued``, which claims the
record, rebuilds the email from it and sends it through the send pipeline,
which updates that same record. Transient failures are retried with backoff
(``sending.resilience``); ``messages_sweep`` resolves what a crash left behind.

Delivery to workers is at least once; the claim (queued -> sending, one
UPDATE) makes a duplicate task a no-op, so a message is never sent twice by
mailhub. A crash after the claim leaves the record ``sending``: the sweep
sends it again only when the ESP takes the message's idempotency key (and so
drops the repeat), and otherwise marks it ``unknown`` for an operator.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from . import lean_sql
from .backends.base import IDEMPOTENCY_KEY_ATTR, RecordReuse
from .exceptions import AnymailError, AnymailRecipientsRefused
from .models import Message, MessageStatus, Recipient, SendStatus
from .resilience import broker_configured, classify_failure, queue_setting, retry_delay
from .services import RECORD_ID_ATTR, RECORD_REUSE_ATTR, RecordNotClaimed, message_rebuild

logger = logging.getLogger(__name__)


class QueuedSendOutcome:
    """What message_send_queued did (the task's return value, for logs)."""

    SENT = "sent"  # the pipeline recorded the ESP's answer (sent, rejected, suppressed)
    RETRY = "retry"  # a transient failure: queued again, due at next_attempt_at
    FAILED = "failed"  # a permanent failure, or out of attempts
    UNKNOWN = "unknown"  # an ambiguous failure that can't be retried safely
    CANCELLED = "cancelled"  # a pre_send receiver cancelled it
    SKIPPED = "skipped"  # not queued any more (a duplicate task): nothing done


# ---------------------------------------------------------------------------
# Handing messages to workers


def message_enqueue(*, message_id: int, countdown: float | None = None) -> bool:
    """Hand a queued message to a worker; return whether it was handed over.

    With no Celery broker, send it now in this process, or (when it is due
    later) leave it for the sweep. When the broker can't be reached the
    message stays queued and the sweep hands it over again later.
    """
    if not broker_configured():
        if countdown:
            return False
        message_send_queued(message_id=message_id)
        return True
    from kombu.exceptions import OperationalError

    from .tasks import send_queued_message

    try:
        send_queued_message.apply_async((message_id,), countdown=countdown)
    except (OperationalError, OSError) as error:
        logger.warning(
            "mailhub: couldn't enqueue message %s (%s); it stays queued for the sweep",
            message_id,
            error,
        )
        return False
    return True


# ---------------------------------------------------------------------------
# Sending a queued message (the worker's side)


def message_send_queued(*, message_id: int) -> str:
    """Send a queued message through its backend, updating its record; return the outcome.

    The pipeline claims the record (queued -> sending, RecordReuse) as it
    records the attempt, right before the ESP call; a worker that loses the
    claim to another stops there.
    """
    record = Message.objects.filter(pk=message_id, status=MessageStatus.QUEUED).first()
    if record is None:
        return QueuedSendOutcome.SKIPPED  # sent, being sent, or gone
    try:
        email = message_rebuild(record=record)
        backend = worker_backend(record.queue_backend or record.backend)
    except (ImportError, ImproperlyConfigured, ValueError) as error:
        # The same error would stop every retry: give up now, saying why.
        return _message_give_up(record_id=record.pk, error=error)
    setattr(email, RECORD_REUSE_ATTR, RecordReuse(record.pk, from_status=MessageStatus.QUEUED))
    if record.idempotency_key:
        setattr(email, IDEMPOTENCY_KEY_ATTR, record.idempotency_key)

    try:
        backend.send_messages([email])
    except RecordNotClaimed:
        return QueuedSendOutcome.SKIPPED
    except AnymailRecipientsRefused:
        return QueuedSendOutcome.SENT  # the ESP answered (rejected): recorded as such
    except AnymailError as error:
        if getattr(email, RECORD_ID_ATTR, None) is None:
            # Refused before any attempt was recorded (an invalid address, a
            # feature the ESP lacks): it would fail the same way every time.
            return _message_give_up(record_id=record.pk, error=error)
        return _after_failed_attempt(record_id=record.pk, error=error)

    if getattr(email, RECORD_ID_ATTR, None) is None:
        # The pipeline stopped before recording: a pre_send receiver cancelled it.
        _message_close(
            record_id=record.pk,
            status=MessageStatus.FAILED,
            recipient_status=SendStatus.FAILED,
            error="Not sent: cancelled by a pre_send receiver.",
            from_status=MessageStatus.QUEUED,
        )
        return QueuedSendOutcome.CANCELLED
    return QueuedSendOutcome.SENT


def _message_give_up(*, record_id: int, error: BaseException) -> str:
    _message_close(
        record_id=record_id,
        status=MessageStatus.FAILED,
        recipient_status=SendStatus.FAILED,
        error=f"{type(error).__name__}: {error}",
        from_status=MessageStatus.QUEUED,
    )
    return QueuedSendOutcome.FAILED


def _after_failed_attempt(*, record_id: int, error: AnymailError) -> str:
    """Retry a transient failure later, or leave the record failed."""
    failure = classify_failure(error)
    if not failure.transient:
        return QueuedSendOutcome.FAILED  # recorded failed by the pipeline
    attempts, backend_path, idempotency_key, error_text = (
        Message.objects.filter(pk=record_id)
        .values_list("attempts", "backend", "idempotency_key", "error")
        .get()
    )
    max_attempts = int(queue_setting("MAX_ATTEMPTS"))
    if attempts >= max_attempts:
        _message_close(
            record_id=record_id,
            status=MessageStatus.FAILED,
            recipient_status=SendStatus.FAILED,
            error=f"Gave up after {attempts} attempts. The last error: {error_text}",
            from_status=MessageStatus.FAILED,
        )
        return QueuedSendOutcome.FAILED
    idempotent = bool(idempotency_key) and backend_supports_idempotency(backend_path)
    if failure.ambiguous and not idempotent and not queue_setting("RETRY_AMBIGUOUS"):
        _message_close(
            record_id=record_id,
            status=MessageStatus.UNKNOWN,
            recipient_status=SendStatus.UNKNOWN,
            error=(
                f"The ESP may have accepted this message: {error_text}\n"
                "Not retried automatically (MAILHUB['QUEUE']['RETRY_AMBIGUOUS'] is off): "
                "check the ESP's logs, then resend it if it wasn't sent."
            ),
            from_status=MessageStatus.FAILED,
        )
        return QueuedSendOutcome.UNKNOWN

    delay = retry_delay(attempt=attempts, failure=failure)
    now = timezone.now()
    with transaction.atomic():
        requeued = lean_sql.update(
            Message,
            {
                "status": MessageStatus.QUEUED,
                "next_attempt_at": now + timedelta(seconds=delay),
                "updated_at": now,
            },
            where={"id": record_id, "status": MessageStatus.FAILED},
        )
        if requeued:
            lean_sql.update(
                Recipient,
                {"send_status": SendStatus.PENDING},
                where={"message": record_id, "send_status": SendStatus.FAILED},
            )
    if not requeued:
        return QueuedSendOutcome.FAILED
    transaction.on_commit(lambda: message_enqueue(message_id=record_id, countdown=delay))
    return QueuedSendOutcome.RETRY


def _message_close(
    *,
    record_id: int,
    status: str,
    recipient_status: str,
    error: str,
    from_status: str | None = None,
) -> int:
    """Give a record its final status (only from from_status, when given); recipients
    not yet answered for get recipient_status."""
    where: dict[str, Any] = {"id": record_id}
    if from_status is not None:
        where["status"] = from_status
    with transaction.atomic():
        updated = lean_sql.update(
            Message,
            {
                "status": status,
                "error": error,
                "next_attempt_at": None,
                "updated_at": timezone.now(),
            },
            where=where,
        )
        if updated:
            lean_sql.update(
                Recipient,
                {"send_status": recipient_status},
                where={"message": record_id},
                where_in=("send_status", [SendStatus.PENDING, SendStatus.FAILED]),
            )
    return updated


def backend_supports_idempotency(path: str) -> bool:
    """Whether the backend at path sends idempotency keys to its ESP."""
    try:
        return bool(getattr(import_string(path), "supports_idempotency_key", False))
    except ImportError:
        return False


# Backends are kept open per worker thread: one HTTP session (keep-alive
# connection to the ESP) serves every message that worker sends.
_worker_state = threading.local()


def worker_backend(path: str) -> Any:
    """This thread's open instance of the backend at path."""
    backends = getattr(_worker_state, "backends", None)
    if backends is None:
        backends = _worker_state.backends = {}
    backend = backends.get(path)
    if backend is None:
        backend = import_string(path)(fail_silently=False)
        backend.open()
        backends[path] = backend
    return backend


def _forget_worker_backends(**_kwargs: Any) -> None:
    for backend in (getattr(_worker_state, "backends", None) or {}).values():
        backend.close()
    _worker_state.backends = {}


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("ANYMAIL", "MAILHUB") or setting.startswith("ANYMAIL_"):
        _forget_worker_backends()


setting_changed.connect(_on_setting_changed)


# ---------------------------------------------------------------------------
# The sweep: what a crash or a broker outage left behind


@dataclass
class SweepResult:
    """Message ids the sweep handled, by what it did with them."""

    #: Stuck "sending", queued again: the ESP drops a repeat with the same idempotency key.
    resent: list[int] = field(default_factory=list)
    #: Stuck "sending", marked "unknown" for an operator: a resend could deliver twice.
    unknown: list[int] = field(default_factory=list)
    #: Queued and due, but no worker took them (the broker lost the task): handed over again.
    redispatched: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        return {
            "resent": len(self.resent),
            "unknown": len(self.unknown),
            "redispatched": len(self.redispatched),
        }


def messages_sweep(
    *,
    stuck_after: float | None = None,
    queued_lost_after: float | None = None,
    limit: int | None = None,
    dry_run: bool = False,
) -> SweepResult:
    """Resolve messages left "sending" by a crash; hand lost queued messages over again.

    stuck_after and queued_lost_after are seconds (default: the
    STUCK_AFTER and QUEUED_LOST_AFTER settings; with no broker, a queued
    message is handed over as soon as it is due). With dry_run, only report.
    """
    if stuck_after is None:
        stuck_after = float(queue_setting("STUCK_AFTER"))
    if queued_lost_after is None:
        queued_lost_after = (
            float(queue_setting("QUEUED_LOST_AFTER")) if broker_configured() else 0.0
        )
    if limit is None:
        limit = int(queue_setting("SWEEP_BATCH"))
    result = SweepResult()
    now = timezone.now()

    stuck = (
        Message.objects.stuck_sending(now - timedelta(seconds=stuck_after))
        .order_by("updated_at")
        .values_list("pk", "backend", "esp", "idempotency_key", "queue_backend", "updated_at")
    )
    for pk, backend_path, esp, key, queue_backend, updated_at in stuck[:limit]:
        if key and queue_backend and backend_supports_idempotency(backend_path):
            if dry_run or _message_requeue_stuck(pk, updated_at, now):
                result.resent.append(pk)
        elif dry_run or _message_mark_lost(pk, updated_at, esp, backend_path):
            result.unknown.append(pk)

    due = (
        Message.objects.queued_due(now - timedelta(seconds=queued_lost_after))
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)
    )
    for pk in due[:limit]:
        # Marked as handed over now, so the next sweep doesn't hand it over again at once.
        if dry_run or Message.objects.filter(pk=pk, status=MessageStatus.QUEUED).update(
            next_attempt_at=now
        ):
            result.redispatched.append(pk)
    if not dry_run:
        for pk in result.resent + result.redispatched:
            transaction.on_commit(lambda pk=pk: message_enqueue(message_id=pk))
    return result


def _message_requeue_stuck(pk: int, updated_at: Any, now: Any) -> bool:
    note = (
        f"Left sending (last update {updated_at:%Y-%m-%d %H:%M:%S %Z}) by a worker that "
        "stopped mid-send; sent again with the same idempotency key, so the ESP drops "
        "it if it already had it."
    )
    with transaction.atomic():
        requeued = Message.objects.filter(
            pk=pk, status=MessageStatus.SENDING, updated_at=updated_at
        ).update(status=MessageStatus.QUEUED, next_attempt_at=now, updated_at=now, error=note)
        if requeued:
            lean_sql.update(Recipient, {"send_status": SendStatus.PENDING}, where={"message": pk})
    return bool(requeued)


def _message_mark_lost(pk: int, updated_at: Any, esp: str, backend_path: str) -> bool:
    error = (
        f"mailhub lost track of this send: it was being sent through {esp} "
        f"({backend_path}) when the worker or process stopped (last update "
        f"{updated_at:%Y-%m-%d %H:%M:%S %Z}). {esp} may or may not have accepted it, and "
        "it takes no idempotency key to retry safely with, so mailhub won't send it "
        f"again on its own (that could deliver it twice). Check {esp}'s activity log for "
        "it, and resend it if it isn't there."
    )
    with transaction.atomic():
        marked = Message.objects.filter(
            pk=pk, status=MessageStatus.SENDING, updated_at=updated_at
        ).update(status=MessageStatus.UNKNOWN, error=error, updated_at=timezone.now())
        if marked:
            lean_sql.update(
                Recipient,
                {"send_status": SendStatus.UNKNOWN},
                where={"message": pk, "send_status": SendStatus.PENDING},
            )
    return bool(marked)
