"""Failover: send through the first healthy ESP, and on a transient failure through the next.

The backends are the ``backends`` option, else
``MAILHUB["QUEUE"]["FAILOVER_BACKENDS"]``, tried in order::

    EMAIL_BACKEND = "sending.backends.routing.EmailBackend"
    MAILHUB = {..., "QUEUE": {"FAILOVER_BACKENDS": [
        "sending.backends.postmark.EmailBackend",
        "sending.backends.mailgun.EmailBackend",
    ]}}

Each message goes through one backend's whole send pipeline. A transient
failure (timeout, connection error, 429, 5xx) moves it to the next backend,
which updates the same record, so the record ends up showing the ESP that
sent it, with one attempt counted per ESP called. A permanent failure (an
invalid address, a 4xx) is raised at once: another ESP would refuse it too.

An ESP whose recent error rate is over ``UNHEALTHY_ERROR_RATE``
(``sending.resilience.esp_health``, shared by all processes through Redis
when there is one) is tried only after the healthy ones, until its window
passes and it gets traffic again.
"""

from __future__ import annotations

from typing import Any

from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import EmailMessage
from django.utils.module_loading import import_string

from ..exceptions import AnymailConfigurationError, AnymailError
from ..resilience import classify_failure, esp_health, queue_setting
from ..utils import UNSET
from .base import RECORD_REUSE_ATTR, AnymailBaseBackend, RecordReuse


class EmailBackend(BaseEmailBackend):
    """Send through a list of backends, failing over on transient errors."""

    def __init__(self, fail_silently: bool = False, **kwargs: Any) -> None:
        paths = kwargs.pop("backends", UNSET)
        if paths is UNSET:
            paths = queue_setting("FAILOVER_BACKENDS")
        super().__init__(**kwargs)
        self.fail_silently = fail_silently
        if not paths:
            raise AnymailConfigurationError(
                'Set MAILHUB["QUEUE"]["FAILOVER_BACKENDS"] (or the routing backend\'s '
                '"backends" option) to the backends to send through, in order.'
            )
        self.backends: list[AnymailBaseBackend] = []
        for path in paths:
            backend = import_string(path)(fail_silently=False)
            if not isinstance(backend, AnymailBaseBackend):
                raise AnymailConfigurationError(
                    f"The routing backend fails over between mailhub backends; {path} is not one."
                )
            self.backends.append(backend)
        self._opened: list[AnymailBaseBackend] = []

    @property
    def supports_idempotency_key(self) -> bool:
        return any(backend.supports_idempotency_key for backend in self.backends)

    def route(self) -> list[AnymailBaseBackend]:
        """The backends in the order to try them: healthy ones first, each group in order."""
        healthy = [backend for backend in self.backends if esp_health.is_healthy(backend.esp_key)]
        return healthy + [backend for backend in self.backends if backend not in healthy]

    @property
    def primary(self) -> AnymailBaseBackend:
        """The backend the next message is tried with first."""
        return self.route()[0]

    def open(self) -> bool:
        self._opened = [backend for backend in self.backends if backend.open()]
        return bool(self._opened)

    def close(self) -> None:
        opened, self._opened = self._opened, []
        for backend in opened:
            backend.close()

    @staticmethod
    def reuse_record(message: EmailMessage) -> None:
        """Make the next attempt update the record the failed one left "failed"."""
        from ..models import MessageStatus  # models load only when recording is on
        from ..services import RECORD_ID_ATTR

        record_id = getattr(message, RECORD_ID_ATTR, None)
        if record_id is not None:
            reuse = RecordReuse(record_id, from_status=MessageStatus.FAILED)
            setattr(message, RECORD_REUSE_ATTR, reuse)

    def send_messages(self, email_messages: list[EmailMessage]) -> int:
        if not email_messages:
            return 0
        created_session = self.open()
        num_sent = 0
        try:
            for message in email_messages:
                try:
                    num_sent += self._send(message)
                except AnymailError:
                    if not self.fail_silently:
                        raise
        finally:
            if created_session:
                self.close()
        return num_sent

    def _send(self, message: EmailMessage) -> bool:
        reuse_before = getattr(message, RECORD_REUSE_ATTR, None)
        backends = self.route()
        try:
            for position, backend in enumerate(backends):
                try:
                    sent = backend.send_messages([message])
                except AnymailError as error:
                    failure = classify_failure(error)
                    esp_health.record(backend.esp_key, ok=not failure.transient)
                    if (
                        not failure.transient
                        or position == len(backends) - 1
                        # Another ESP can't drop a repeat of what this one may have taken.
                        or (failure.ambiguous and not queue_setting("RETRY_AMBIGUOUS"))
                    ):
                        raise
                    if backend.record:
                        self.reuse_record(message)
                    continue
                esp_health.record(backend.esp_key, ok=True)
                return bool(sent)
            return False
        finally:
            # Sending the same message object again later must record a new message.
            if reuse_before is None:
                if hasattr(message, RECORD_REUSE_ATTR):
                    delattr(message, RECORD_REUSE_ATTR)
            else:
                setattr(message, RECORD_REUSE_ATTR, reuse_before)
