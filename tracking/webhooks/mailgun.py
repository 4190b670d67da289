"""Tracking webhook for Mailgun (the current, non-legacy webhooks).

Mailgun posts one event per call, as JSON (``Content-Type: application/json``)::

    {"signature": {"timestamp": "1770920772", "token": "<50 random chars>",
                   "signature": "<hex HMAC-SHA256>"},
     "event-data": {"event": "delivered", "id": "...", "timestamp": 1770920772.51,
                    "recipient": "...", "tags": [...], "user-variables": {...},
                    "message": {"headers": {"message-id": "...", ...}},
                    "delivery-status": {"code": 250, "message": "...", ...}, ...}}

Event types (``event-data.event``): accepted, rejected, delivered, failed
(``severity`` "permanent" or "temporary", with a ``reason``), opened, clicked,
unsubscribed, complained; anything else (stored, list events) is "unknown".

The send API returns the message id in angle brackets ("<id@domain>", the
form sending.backends.mailgun records), while events carry it bare in
``message.headers.message-id``: the brackets are added back so the two match.

Signature: HMAC-SHA256 of ``timestamp + token``, keyed with the domain's HTTP
webhook signing key, hex encoded. Set MAILGUN_WEBHOOK_SIGNING_KEY to check it;
without it, MAILGUN_API_KEY is used, as older setups (whose signing key was
the API key) expect. A subaccount's event also carries ``parent-signature``,
made with the primary account's key; either one may match. A call whose
timestamp is more than MAILGUN_WEBHOOK_TOLERANCE seconds (default 300) from
now is refused. Mailgun retries an unanswered call for up to 8 hours and
doesn't document whether a retry is signed afresh; if retries arrive with
their first timestamp, raise the tolerance to cover the outage you want to
survive. A wider window is safe: a replayed call changes nothing, because the
token is the event id (a nonce) and recording ignores an event id it has seen.

The signature covers only the timestamp and token, not ``event-data``; the
token's use as the event id means a captured signature can't be reused for
a second event.

Legacy (form-encoded) webhooks were retired by Mailgun in 2023 and are refused
with a 400 that says so.

Reference: https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/securing-webhooks,
https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/webhook-payloads,
https://documentation.mailgun.com/docs/mailgun/user-manual/events/event-types and
https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/webhook-retries
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest
from django.http.multipartparser import MultiPartParserError

from sending.exceptions import AnymailWebhookPayloadError, AnymailWebhookValidationFailure
from sending.signals import AnymailTrackingEvent, EventType, RejectReason
from sending.utils import get_anymail_setting

from .base import (
    AnymailBaseWebhookView,
    check_timestamp,
    constant_time_equal,
    describe_wrong_payload,
)

DEFAULT_TOLERANCE = 300

EVENT_TYPES = {
    "accepted": EventType.QUEUED,
    "rejected": EventType.REJECTED,
    "delivered": EventType.DELIVERED,
    "failed": EventType.BOUNCED,  # or deferred, rejected: see failure()
    "opened": EventType.OPENED,
    "clicked": EventType.CLICKED,
    "unsubscribed": EventType.UNSUBSCRIBED,
    "complained": EventType.COMPLAINED,
}

# A permanent failure's "reason". "suppress-*" means Mailgun didn't try,
# because of an earlier bounce, complaint or unsubscribe; "old" means it
# gave up retrying ("messages that reached their retry limit").
PERMANENT_FAILURES = {
    "suppress-bounce": (EventType.REJECTED, RejectReason.BOUNCED),
    "suppress-complaint": (EventType.REJECTED, RejectReason.SPAM),
    "suppress-unsubscribe": (EventType.REJECTED, RejectReason.UNSUBSCRIBED),
    "bounce": (EventType.BOUNCED, RejectReason.BOUNCED),
    "delayed-bounce": (EventType.BOUNCED, RejectReason.BOUNCED),
    "old": (EventType.BOUNCED, RejectReason.TIMED_OUT),
    "espblock": (EventType.BOUNCED, RejectReason.BLOCKED),
}


class MailgunTrackingWebhookView(AnymailBaseWebhookView):
    esp_name = "Mailgun"

    def __init__(self, **kwargs: Any) -> None:
        esp = self.esp_name
        self.signing_key = get_anymail_setting(
            "webhook_signing_key", esp_name=esp, kwargs=kwargs, default=None
        )
        self.signing_key_setting = "MAILGUN_WEBHOOK_SIGNING_KEY"
        api_key = get_anymail_setting(
            "api_key", esp_name=esp, kwargs=kwargs, default=None, allow_bare=True
        )
        if self.signing_key is None and api_key:
            self.signing_key = api_key
            self.signing_key_setting = "MAILGUN_API_KEY (MAILGUN_WEBHOOK_SIGNING_KEY is unset)"
        self.tolerance = int(
            get_anymail_setting(
                "webhook_tolerance", esp_name=esp, kwargs=kwargs, default=DEFAULT_TOLERANCE
            )
        )
        if self.signing_key:
            # Every call then proves it knows the key, so basic auth is optional
            # (as Mailgun's "Securing webhooks" intends).
            self.warn_if_no_basic_auth = False
        super().__init__(**kwargs)

    # Authentication

    def validate_request(self, request: HttpRequest) -> None:
        if not self.signing_key:
            return
        signature = self.load_payload(request).get("signature")
        if not isinstance(signature, dict) or not all(
            signature.get(field) for field in ("timestamp", "token", "signature")
        ):
            raise AnymailWebhookValidationFailure(
                'Mailgun webhook call has no "signature" with timestamp, token and signature.'
            )
        signed = f"{signature['timestamp']}{signature['token']}".encode()
        expected = hmac.new(str(self.signing_key).encode(), signed, hashlib.sha256).hexdigest()
        supplied = [signature.get("signature"), signature.get("parent-signature")]
        if not any(
            isinstance(value, str) and constant_time_equal(value.lower(), expected)
            for value in supplied
        ):
            raise AnymailWebhookValidationFailure(
                f"Mailgun webhook signature doesn't match: check {self.signing_key_setting} "
                "against the HTTP webhook signing key in Mailgun's dashboard."
            )
        check_timestamp(signature["timestamp"], self.tolerance, self.esp_name)

    # Parsing

    def load_payload(self, request: HttpRequest) -> dict:
        """The JSON payload, or AnymailWebhookPayloadError saying what was posted instead."""
        if not request.body:
            raise AnymailWebhookPayloadError("Empty Mailgun webhook body: expected JSON.")
        if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            try:
                fields = request.POST
            except MultiPartParserError as err:
                raise AnymailWebhookPayloadError(
                    f"Mailgun webhooks post JSON; this is malformed form data: {err}"
                ) from err
            if any(name in fields for name in ("body-mime", "body-plain", "stripped-text")):
                raise AnymailWebhookPayloadError(
                    "This looks like a Mailgun inbound (route) post: point the route at "
                    "the Mailgun inbound webhook URL, not the tracking URL."
                )
            if "event" in fields and "token" in fields:
                raise AnymailWebhookPayloadError(
                    "This looks like a Mailgun legacy webhook (form-encoded), which Mailgun "
                    "retired in 2023: set up the current webhooks, which post JSON."
                )
        self.require_content_type(request, "application/json")
        payload = self.parse_json_body(request)
        if not isinstance(payload, dict) or not isinstance(payload.get("event-data"), dict):
            raise AnymailWebhookPayloadError(
                describe_wrong_payload(
                    payload,
                    'Mailgun webhook payload must be an object with "signature" and "event-data"',
                    esp_name=self.esp_name,
                )
                + " Is another ESP's or an inbound webhook posted to the Mailgun tracking URL?"
            )
        return payload

    def parse_events(self, request: HttpRequest) -> list[AnymailTrackingEvent]:
        return [self.parse_event(self.load_payload(request))]

    def parse_event(self, payload: dict) -> AnymailTrackingEvent:
        event_data = payload["event-data"]
        mailgun_type = event_data.get("event")
        event_type = EVENT_TYPES.get(mailgun_type, EventType.UNKNOWN)
        reject_reason = None
        if mailgun_type == "failed":
            event_type, reject_reason = self.failure(event_data)
        elif mailgun_type == "rejected":
            reject_reason = RejectReason.OTHER

        delivery_status = event_data.get("delivery-status") or {}
        reject = event_data.get("reject") or {}
        signature = payload.get("signature") or {}
        headers = (event_data.get("message") or {}).get("headers") or {}
        client_info = event_data.get("client-info") or {}
        user_variables = event_data.get("user-variables")
        return AnymailTrackingEvent(
            event_type=event_type,
            timestamp=datetime.fromtimestamp(float(event_data["timestamp"]), tz=UTC),
            # The token (the documented API's event_id): event-data's id is
            # unique only within a day, the token is a 50-character nonce.
            event_id=signature.get("token") or event_data.get("id"),
            message_id=bracketed(headers.get("message-id")),
            recipient=event_data.get("recipient"),
            reject_reason=reject_reason,
            description=(
                delivery_status.get("description")
                or reject.get("description")
                or reject.get("reason")
                or None
            ),
            mta_response=mta_response(delivery_status),
            tags=list(event_data.get("tags") or []),
            metadata=user_variables if isinstance(user_variables, dict) else {},
            click_url=event_data.get("url") if event_type == EventType.CLICKED else None,
            user_agent=client_info.get("user-agent") or None,
            esp_event=payload,
        )

    @staticmethod
    def failure(event_data: dict) -> tuple[str, str | None]:
        """(event type, reject reason) for a "failed" event, by its severity and reason."""
        if event_data.get("severity") == "temporary":
            # Mailgun keeps trying; a permanent failure follows if it gives up.
            return EventType.DEFERRED, None
        reason = str(event_data.get("reason") or "").lower()
        return PERMANENT_FAILURES.get(reason, (EventType.BOUNCED, RejectReason.OTHER))


def bracketed(message_id: str | None) -> str | None:
    """The message id as the send API returned it: "<id@domain>"."""
    if not message_id:
        return None
    message_id = message_id.strip()
    return message_id if message_id.startswith("<") else f"<{message_id}>"


def mta_response(delivery_status: dict) -> str | None:
    """The receiving server's reply, with its SMTP code, as one line."""
    message = str(delivery_status.get("message") or "").strip()
    code = delivery_status.get("code")
    if code and not message.startswith(str(code)):
        message = f"{code} {message}".strip()
    return message or None
