"""Inbound webhook for SparkPost relay webhooks (inbound email relaying).

A relay webhook POSTs batches as a JSON array, each element one received
message: ``{"msys": {"relay_message": {"content": {"email_rfc822",
"email_rfc822_is_base64", "headers": [{name: value}, ...], "html", "text",
"subject", "to": [...], "cc"?}, "customer_id", "friendly_from", "msg_from",
"rcpt_to", "webhook_id", "protocol"?}}}``. ``email_rfc822`` is the raw
message, base64-encoded (``email_rfc822_is_base64``) when it "contains at
least one non UTF-8 encoded character"; it is parsed and stored exactly as
received. ``msg_from`` (the SMTP MAIL FROM) and ``rcpt_to`` (RCPT TO) are
the envelope. SparkPost gives no event id, timestamp or spam verdict.
A ``{"msys": {}}`` element (SparkPost's test batch) is answered 200 and
stored as nothing.

Authentication: WEBHOOK_SECRET as credentials in the relay webhook's target
URL (``https://user:pass@host/anymail/sparkpost/inbound/``), and/or the
relay webhook's ``auth_token``, which SparkPost presents in the
``X-MessageSystems-Webhook-Token`` header: set it as
SPARKPOST_RELAY_WEBHOOK_TOKEN (a list is accepted while rotating) and a
missing or wrong token is refused (403). With a token set, basic auth is
optional. (SparkPost's OAuth 2.0 option isn't supported.)

Event webhooks (tracking) posted here are refused (400): their URL is
anymail/sparkpost/tracking/.

References: https://developers.sparkpost.com/api/relay-webhooks/,
https://support.sparkpost.com/docs/tech-resources/inbound-email-relay-webhook
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from sending.exceptions import AnymailWebhookPayloadError, AnymailWebhookValidationFailure
from sending.signals import AnymailInboundEvent
from sending.utils import get_anymail_setting
from tracking.webhooks.base import b64decode_or_none, constant_time_equal

from ..message import AnymailInboundMessage
from .base import AnymailInboundWebhookView, inbound_event

TOKEN_HEADER = "X-MessageSystems-Webhook-Token"


class SparkPostInboundWebhookView(AnymailInboundWebhookView):
    """SparkPost relay webhook batches (raw MIME)."""

    esp_name = "SparkPost"
    sensitive_headers = (TOKEN_HEADER.lower(),)

    def __init__(self, **kwargs: Any) -> None:
        tokens = get_anymail_setting(
            "relay_webhook_token", esp_name=self.esp_name, kwargs=kwargs, default=None
        )
        if isinstance(tokens, str):
            tokens = [tokens]
        self.relay_tokens = [token for token in tokens or [] if token]
        # A configured token authenticates every call; without it, insist on basic auth.
        self.warn_if_no_basic_auth = not self.relay_tokens
        super().__init__(**kwargs)

    def validate_request(self, request: HttpRequest) -> None:
        if not self.relay_tokens:
            return
        supplied = request.headers.get(TOKEN_HEADER)
        if not supplied:
            raise AnymailWebhookValidationFailure(
                f"SparkPost relay webhook called without an {TOKEN_HEADER} header."
            )
        matched = False
        for token in self.relay_tokens:
            # compare every token, so timing doesn't reveal which one matched
            matched |= constant_time_equal(supplied, token)
        if not matched:
            raise AnymailWebhookValidationFailure(
                f"SparkPost relay webhook {TOKEN_HEADER} doesn't match: check "
                "SPARKPOST_RELAY_WEBHOOK_TOKEN is the relay webhook's auth_token."
            )

    def parse_events(self, request: HttpRequest) -> list[AnymailInboundEvent]:
        if not request.body:
            raise AnymailWebhookPayloadError(
                "Empty SparkPost relay webhook body: expected a JSON array."
            )
        self.require_content_type(request, "application/json")
        batch = self.parse_json_body(request)
        if not isinstance(batch, list):
            raise AnymailWebhookPayloadError(
                'SparkPost relay webhooks post a JSON array of {"msys": {"relay_message": '
                f"...}}}} objects, not a JSON {type(batch).__name__}: is this another ESP's "
                "webhook posted to the SparkPost URL?"
            )
        events = []
        for item in batch:
            relay_message = self.unwrap(item)
            if relay_message is not None:
                events.append(self.parse_relay_message(relay_message, item))
        return events

    def unwrap(self, item: Any) -> dict | None:
        """The relay_message in one batch element; None for the test batch's empty one."""
        msys = item.get("msys") if isinstance(item, dict) else None
        if not isinstance(msys, dict):
            raise AnymailWebhookPayloadError(
                'SparkPost relay webhook batch elements must be {"msys": {...}} objects, '
                f"not {str(item)[:100]!r}."
            )
        if not msys:
            return None
        relay_message = msys.get("relay_message")
        if not isinstance(relay_message, dict):
            event_class = next(iter(msys))
            raise AnymailWebhookPayloadError(
                f"This is a SparkPost event webhook ({event_class}) payload, posted to the "
                "inbound URL: point the event webhook at anymail/sparkpost/tracking/ instead."
            )
        return relay_message

    def parse_relay_message(self, relay_message: dict, item: dict) -> AnymailInboundEvent:
        content = relay_message.get("content")
        rfc822 = content.get("email_rfc822") if isinstance(content, dict) else None
        if not isinstance(rfc822, str) or not rfc822.strip():
            raise AnymailWebhookPayloadError(
                "SparkPost relay_message has no content.email_rfc822 (the received message)."
            )
        if content.get("email_rfc822_is_base64"):
            raw = b64decode_or_none("".join(rfc822.split()))
            if raw is None:
                raise AnymailWebhookPayloadError(
                    "SparkPost relay_message email_rfc822 is flagged base64 but isn't valid base64."
                )
        else:
            # Only UTF-8 content is sent unencoded.
            raw = rfc822.encode("utf-8", errors="surrogateescape")
        message = AnymailInboundMessage.parse_raw_mime_bytes(raw)
        message.envelope_sender = relay_message.get("msg_from") or None
        message.envelope_recipient = relay_message.get("rcpt_to") or None
        return inbound_event(
            message=message,
            esp_event=item,  # as SparkPost sent it: {"msys": {"relay_message": {...}}}
            raw=raw,
            event_id=None,
            timestamp=None,
        )
