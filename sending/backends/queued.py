"""Queued sending: record each message now, send it from a Celery worker.

``send_messages()`` validates each message by building the wrapped
backend's payload (so an unsupported feature or a bad address still raises
in the caller), records it as ``queued`` in the caller's transaction, and
hands it to a worker once that transaction commits. The worker rebuilds the
email from the record and sends it through the wrapped backend, updating
the same record; transient ESP failures are retried with backoff
(``sending.queueing``). The caller's ``anymail_status`` says ``queued`` for
each recipient, with no ESP message id yet.

The wrapped backend is the ``backend`` option, else ``MAILHUB["QUEUE"]["BACKEND"]``::

    EMAIL_BACKEND = "sending.backends.queued.EmailBackend"
    MAILHUB = {..., "QUEUE": {"BACKEND": "sending.backends.mailgun.EmailBackend"}}

With no ``CELERY_BROKER_URL``, the message is sent in this process right
after the commit. pre_send and post_send run in the worker, around the real
send. The record is the only copy a worker has, so recording
(``MAILHUB["STORE"]``) and content storage (``STORE_CONTENT``) must be on.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import EmailMessage
from django.db import transaction
from django.utils.module_loading import import_string

from ..exceptions import AnymailConfigurationError, AnymailError
from ..message import AnymailRecipientStatus, AnymailStatus
from ..resilience import queue_setting
from ..utils import UNSET, get_mailhub_setting, recording_enabled
from .base import AnymailBaseBackend


class EmailBackend(BaseEmailBackend):
    """Record messages as queued and send them from a worker through another backend."""

    def __init__(self, fail_silently: bool = False, **kwargs: Any) -> None:
        backend_path = kwargs.pop("backend", UNSET)
        if backend_path is UNSET:
            backend_path = queue_setting("BACKEND")
        super().__init__(**kwargs)
        self.fail_silently = fail_silently
        if not backend_path:
            raise AnymailConfigurationError(
                'Set MAILHUB["QUEUE"]["BACKEND"] (or the queued backend\'s "backend" option) '
                "to the backend queued messages are sent through."
            )
        if not recording_enabled() or not get_mailhub_setting("STORE_CONTENT", True):
            raise AnymailConfigurationError(
                "Queued sending keeps each message in the database until a worker sends it: "
                'it needs MAILHUB["STORE"] and MAILHUB["STORE_CONTENT"] set to True.'
            )
        self.backend_path = backend_path
        self.backend = import_string(backend_path)(fail_silently=False)
        # A routing backend builds payloads with the backend it would try first.
        self.payload_backend = getattr(self.backend, "primary", self.backend)
        if not isinstance(self.payload_backend, AnymailBaseBackend):
            raise AnymailConfigurationError(
                f"The queued backend sends through mailhub backends; {backend_path} is not one."
            )

    def send_messages(self, email_messages: list[EmailMessage]) -> int:
        """Record each message as queued; return how many were queued."""
        queued = 0
        for message in email_messages or []:
            try:
                queued += self._enqueue(message)
            except AnymailError:
                if not self.fail_silently:
                    raise
        return queued

    def _enqueue(self, message: EmailMessage) -> bool:
        from .. import queueing, services  # models load only when a backend is used

        message.anymail_status = AnymailStatus()
        if not message.recipients():
            return False  # Django's own backends send nothing to nobody
        backend = self.payload_backend
        suppressed = backend.find_suppressed(message)
        payload = backend.build_message_payload(message, backend.send_defaults, suppressed)
        record = services.message_record_queued(
            backend=backend,
            payload=payload,
            queue_backend=self.backend_path,
            idempotency_key=f"mailhub-{uuid.uuid4().hex}",
        )
        statuses = {
            address.addr_spec: AnymailRecipientStatus(message_id=None, status="queued")
            for address in payload.all_recipients
        }
        for address in payload.suppressed_recipients:
            statuses[address.addr_spec] = AnymailRecipientStatus(
                message_id=None, status="suppressed"
            )
        message.anymail_status.set_recipient_status(statuses)

        if not payload.has_recipients():
            # Every recipient is suppressed: nothing for a worker to do.
            services.message_record_result(record=record, status=message.anymail_status)
            backend.raise_for_recipient_status(message.anymail_status, None, payload, message)
            return False
        # robust: the message is recorded whatever happens to the hand-over
        # (a broker outage); the sweep hands it over again.
        transaction.on_commit(lambda: queueing.message_enqueue(message_id=record.pk), robust=True)
        return True
