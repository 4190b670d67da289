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

Like ESPs that take an idempotency key (Resend's Idempotency-Key header), the
sandbox answers a repeated send with the same key (which queued sending gives
every message) with its first answer, and doesn't deliver it again. It
remembers keys in this process only.

Like a real ESP, the sandbox then reports what happened to each accepted
recipient as tracking events, delivered to mailhub's sandbox tracking
webhook (``anymail/sandbox/tracking/``) through the same pipeline as any
ESP's. By default a recipient is delivered, and (decided by a hash of the
address, so it's repeatable) about half open and a quarter click. Tags
choose an outcome:

* ``name+bounce@``    -> bounced (a hard bounce, which adds a suppression)
* ``name+defer@``     -> deferred, then delivered
* ``name+complain@``  -> delivered, opened, then complained (adds a suppression)
* ``name+open@`` / ``name+click@`` -> delivered and opened / and clicked
* ``name+silent@``    -> no events at all
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.mail.message import EmailMessage

from ..exceptions import AnymailAPIError
from ..message import AnymailRecipientStatus
from .test import EmailBackend as TestBackend
from .test import TestPayload

FAILURE_TAGS = {"invalid": "invalid", "rejected": "rejected", "failed": "failed"}

#: Where the sandbox "ESP" posts its tracking events: callables taking the
#: JSON body. The tracking app registers its sandbox webhook here (imports
#: point from tracking to sending, never back); with none registered, the
#: sandbox sends no events, like an ESP with no webhook configured.
EVENT_SINKS: list[Callable[[bytes], None]] = []

#: Answers by idempotency key, oldest first (the sandbox's memory of sends).
IDEMPOTENT_ANSWERS: OrderedDict[str, dict] = OrderedDict()
IDEMPOTENT_ANSWERS_MAX = 10_000


def sandbox_message_id() -> str:
    """A sortable id shaped like real ESP ids: '<timestamp hex>.<random>@sandbox.mailhub'."""
    return f"<{int(time.time() * 1000):x}.{secrets.token_hex(8)}@sandbox.mailhub>"


class EmailBackend(TestBackend):
    """Send to the local sandbox ESP."""

    esp_name = "Sandbox"
    supports_idempotency_key = True

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
        idempotency_key = payload.params.get("idempotency_key")
        if idempotency_key in IDEMPOTENT_ANSWERS:
            return IDEMPOTENT_ANSWERS[idempotency_key]  # already sent: not again
        self.outbox.append(message)
        statuses = self.recipient_statuses(payload)
        if EVENT_SINKS:
            body = json.dumps({"events": sandbox_events(statuses, payload.params)}).encode()
            for sink in EVENT_SINKS:
                sink(body)
        answer = {"recipients": statuses}
        if idempotency_key:
            IDEMPOTENT_ANSWERS[idempotency_key] = answer
            while len(IDEMPOTENT_ANSWERS) > IDEMPOTENT_ANSWERS_MAX:
                IDEMPOTENT_ANSWERS.popitem(last=False)
        return answer

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


def sandbox_events(statuses: dict[str, AnymailRecipientStatus], params: dict) -> list[dict]:
    """The tracking events the sandbox reports for one send, in its webhook format."""
    now = datetime.now(tz=UTC)
    tags = params.get("tags") or []
    metadata = params.get("metadata") or {}
    events = []
    for address, status in statuses.items():
        if status.status != "queued":
            continue
        tag = address.partition("@")[0].partition("+")[2].lower()
        roll = int(hashlib.sha256(address.lower().encode()).hexdigest()[:4], 16) % 100
        if tag == "silent":
            continue
        if tag == "bounce":
            outcome = [("bounced", 2)]
        elif tag == "defer":
            outcome = [("deferred", 2), ("delivered", 300)]
        elif tag == "complain":
            outcome = [("delivered", 2), ("opened", 60), ("complained", 120)]
        elif tag == "click" or (not tag and roll < 25):
            outcome = [("delivered", 2), ("opened", 60), ("clicked", 75)]
        elif tag == "open" or (not tag and roll < 50):
            outcome = [("delivered", 2), ("opened", 60)]
        else:
            outcome = [("delivered", 2)]
        for event_type, delay in outcome:
            event = {
                "id": f"evt_{secrets.token_hex(10)}",
                "event": event_type,
                "timestamp": (now + timedelta(seconds=delay)).isoformat(),
                "message_id": status.message_id,
                "recipient": address,
                "tags": tags,
                "metadata": metadata,
            }
            if event_type == "bounced":
                event["reason"] = "bounced"
                event["smtp_response"] = (
                    "550 5.1.1 The email account that you tried to reach does not exist"
                )
            elif event_type == "deferred":
                event["smtp_response"] = "451 4.2.0 Mailbox temporarily full, try again later"
            elif event_type == "delivered":
                event["smtp_response"] = "250 2.0.0 OK"
            elif event_type in ("opened", "clicked"):
                event["user_agent"] = (
                    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15"
                )
                if event_type == "clicked":
                    event["url"] = "https://example.com/welcome?utm_source=email"
            events.append(event)
    return events
