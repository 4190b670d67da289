"""The sandbox ESP: a local stand-in for a real ESP, with no network.

It accepts every feature a real ESP does, gives each recipient its own
realistic message id and a send status, and (because it goes through the
same pipeline) is recorded like any other send, so a new install shows the
whole flow without credentials.

Make a recipient fail by tagging its local part (the part before the @):

* ``name+invalid@example.com``   -> status "invalid"
* ``name+rejected@example.com``  -> status "rejected"
* ``name+failed@example.com``    -> status "failed"

and make the whole call fail like an ESP outage with
``message.esp_extra = {"sandbox_error": 503}`` (any HTTP status code):
the send raises AnymailAPIError and is recorded as failed.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from django.core.mail.message import EmailMessage

from ..exceptions import AnymailAPIError
from ..message import AnymailRecipientStatus
from .test import EmailBackend as TestBackend
from .test import TestPayload

FAILURE_TAGS = {"invalid": "invalid", "rejected": "rejected", "failed": "failed"}


def sandbox_message_id() -> str:
    """A sortable id shaped like real ESP ids: '<timestamp hex>.<random>@sandbox.mailhub'."""
    return f"<{int(time.time() * 1000):x}.{secrets.token_hex(8)}@sandbox.mailhub>"


class EmailBackend(TestBackend):
    """Send to the local sandbox ESP."""

    esp_name = "Sandbox"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outbox: list[EmailMessage] = []

    def post_to_esp(self, payload: TestPayload, message: EmailMessage) -> dict:
        error_status = (payload.params.get("esp_extra") or {}).get("sandbox_error")
        if error_status:
            raise AnymailAPIError(
                f"Sandbox ESP answered HTTP {error_status} (simulated by esp_extra)",
                status_code=int(error_status),
                email_message=message,
                payload=payload,
                backend=self,
            )
        message.anymail_send_params = payload.params
        self.outbox.append(message)
        return {"recipients": self.recipient_statuses(payload)}

    def parse_recipient_status(
        self, response: Any, payload: TestPayload, message: EmailMessage
    ) -> dict[str, AnymailRecipientStatus]:
        return response["recipients"]

    @staticmethod
    def recipient_statuses(payload: TestPayload) -> dict[str, AnymailRecipientStatus]:
        statuses = {}
        for address in payload.all_recipients:
            tag = address.username.partition("+")[2].lower()
            status = FAILURE_TAGS.get(tag, "queued")
            message_id = None if status == "invalid" else sandbox_message_id()
            statuses[address.addr_spec] = AnymailRecipientStatus(
                message_id=message_id, status=status
            )
        return statuses
