"""Tracking webhook for Brevo (formerly Sendinblue) transactional email events.

Brevo posts JSON. A webhook created without ``batched`` sends one event
object per call; with ``"batched": true`` it sends a JSON array of events
(up to 500, every five minutes). Each event has ``event`` (the type),
``email`` (the recipient), ``id`` (the *webhook's* id, not the event's),
``message-id`` (``"<...@smtp-relay.mailin.fr>"``, the ``messageId`` the send
API returned), ``date`` (CET/CEST wall time), ``ts``/``ts_event`` (Unix
seconds) and ``ts_epoch`` (Unix milliseconds, UTC), ``subject``, ``tags``
(a list; older events also have ``tag``, a JSON-encoded list),
``X-Mailin-custom`` (the header the send backend fills with the message's
metadata as JSON), ``sending_ip``, ``template_id``, and per-type fields:
``reason`` on bounces, blocks, deferrals and errors, ``link`` on clicks,
``user_agent``/``device_used`` on opens and clicks.

Brevo doesn't sign its calls. Authenticate them with WEBHOOK_SECRET's
credentials in the notify URL (``https://user:pass@host/anymail/brevo/tracking/``),
or with the bearer token Brevo can send (its webhook ``auth``:
``{"type": "bearer", "token": ...}``): set that token as
``BREVO_WEBHOOK_BEARER_TOKEN``. Only one can be used, as both travel in the
Authorization header. Events have no event id: duplicates are recognised by
their content.

Brevo sends both "First opening" (``unique_opened``) and "Opened" for a first
open, and the proxy variants for opens by a privacy proxy (Apple Mail
Privacy Protection and the like): all are "opened", so enable only the ones
you want counted.

Reference: https://developers.brevo.com/docs/transactional-webhooks,
https://developers.brevo.com/docs/batch-webhooks and
https://developers.brevo.com/docs/username-and-password-authentication
(secure webhook calls).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.http import HttpRequest

from sending.exceptions import (
    AnymailConfigurationError,
    AnymailWebhookPayloadError,
    AnymailWebhookValidationFailure,
)
from sending.signals import AnymailTrackingEvent, EventType, RejectReason
from sending.utils import get_anymail_setting

from .base import AnymailBaseWebhookView, constant_time_equal

# Brevo event -> (normalized type, reject reason)
EVENT_TYPES: dict[str, tuple[str, str | None]] = {
    # "Sent": Brevo accepted the request (even one it then blocks)
    "request": (EventType.QUEUED, None),
    "delivered": (EventType.DELIVERED, None),
    "hard_bounce": (EventType.BOUNCED, RejectReason.BOUNCED),
    # Brevo retries a deferred message for 36 hours, then reports a soft bounce.
    "soft_bounce": (EventType.BOUNCED, RejectReason.TIMED_OUT),
    "invalid_email": (EventType.BOUNCED, RejectReason.INVALID),
    # Brevo refused to send: the address is on the account's blocklist.
    "blocked": (EventType.REJECTED, RejectReason.BLOCKED),
    "deferred": (EventType.DEFERRED, None),
    "error": (EventType.FAILED, None),
    "spam": (EventType.COMPLAINED, None),
    "opened": (EventType.OPENED, None),
    "unique_opened": (EventType.OPENED, None),
    "proxy_open": (EventType.OPENED, None),
    "unique_proxy_open": (EventType.OPENED, None),
    "click": (EventType.CLICKED, None),
    "unsubscribed": (EventType.UNSUBSCRIBED, None),
    # Brevo's marketing "contact added to list" (not expected for transactional mail)
    "list_addition": (EventType.SUBSCRIBED, None),
}

# Events whose "reason" is the receiving server's answer (rather than Brevo's own words).
MTA_REASON_EVENTS = frozenset({"hard_bounce", "soft_bounce", "deferred"})

# "date: CET/CEST Timezone" (only used when an event has no Unix timestamp)
BREVO_LOCAL_TIME = ZoneInfo("Europe/Paris")

METADATA_FIELD = "X-Mailin-custom"


class BrevoTrackingWebhookView(AnymailBaseWebhookView):
    esp_name = "Brevo"

    def __init__(self, **kwargs: Any) -> None:
        self.setting_prefix = setting_prefix = self.esp_name.upper().replace(" ", "_")
        tokens = get_anymail_setting(
            "webhook_bearer_token", esp_name=setting_prefix, kwargs=kwargs, default=None
        )
        if isinstance(tokens, str):
            tokens = [tokens]
        self.bearer_tokens: list[str] = [token for token in tokens or [] if token]
        if self.bearer_tokens:
            secrets = get_anymail_setting("webhook_secret", default=None, kwargs=dict(kwargs))
            if isinstance(secrets, str):
                secrets = [secrets]
            if any(secrets or []):
                # Brevo sends either the URL's basic auth or its bearer token
                # in the one Authorization header, never both.
                raise AnymailConfigurationError(
                    f"Set either WEBHOOK_SECRET or {setting_prefix}_WEBHOOK_BEARER_TOKEN "
                    f"for {self.esp_name} webhooks, not both: Brevo sends only one "
                    "Authorization header."
                )
            # The bearer token authenticates every call instead of basic auth.
            self.warn_if_no_basic_auth = False
        super().__init__(**kwargs)

    def validate_request(self, request: HttpRequest) -> None:
        if not self.bearer_tokens:
            return
        supplied = request.META.get("HTTP_AUTHORIZATION", "")
        matched = False
        for token in self.bearer_tokens:
            # compare every token, so timing doesn't reveal which one matched
            matched |= constant_time_equal(supplied, f"Bearer {token}")
        if not matched:
            raise AnymailWebhookValidationFailure(
                f"Missing or invalid bearer token in {self.esp_name} webhook: check "
                f"{self.setting_prefix}_WEBHOOK_BEARER_TOKEN and the webhook's auth token."
            )

    def parse_events(self, request: HttpRequest) -> list[AnymailTrackingEvent]:
        if not request.body:
            # (checked first: an empty request often has no content type either)
            raise AnymailWebhookPayloadError(f"Empty {self.esp_name} webhook body: expected JSON.")
        self.require_content_type(request, "application/json")
        payload = self.parse_json_body(request)
        # One event per call; a list from a "batched" webhook.
        esp_events = payload if isinstance(payload, list) else [payload]
        if not esp_events:
            raise AnymailWebhookPayloadError(
                f"{self.esp_name} webhook payload is an empty list of events."
            )
        return [self.parse_event(esp_event) for esp_event in esp_events]

    def parse_event(self, esp_event: Any) -> AnymailTrackingEvent:
        self.check_is_event(esp_event)
        brevo_type = esp_event["event"]
        event_type, reject_reason = EVENT_TYPES.get(brevo_type, (EventType.UNKNOWN, None))
        reason = esp_event.get("reason") or None
        return AnymailTrackingEvent(
            event_type=event_type,
            timestamp=self.parse_timestamp(esp_event),
            event_id=None,  # "id" is the webhook's id, the same in every event
            message_id=self.parse_message_id(esp_event.get("message-id")),
            recipient=esp_event.get("email") or None,
            reject_reason=reject_reason,
            description=reason,
            mta_response=reason if brevo_type in MTA_REASON_EVENTS else None,
            tags=self.parse_tags(esp_event),
            metadata=self.parse_metadata(esp_event.get(METADATA_FIELD)),
            click_url=esp_event.get("link") or None,
            user_agent=esp_event.get("user_agent") or None,
            esp_event=esp_event,
        )

    def check_is_event(self, esp_event: Any) -> None:
        """Refuse anything that isn't a Brevo transactional event, saying what it looks like."""
        if isinstance(esp_event, dict) and isinstance(esp_event.get("items"), list):
            raise AnymailWebhookPayloadError(
                f'This is a {self.esp_name} inbound parsing payload (an "items" list), '
                "not a transactional email event: point Brevo's inbound webhook at "
                "anymail/brevo/inbound/ instead of this tracking URL."
            )
        if not isinstance(esp_event, dict):
            raise AnymailWebhookPayloadError(
                f"{self.esp_name} webhook events must be JSON objects, "
                f"not {type(esp_event).__name__}."
            )
        if isinstance(esp_event.get("event"), str):
            return
        keys = ", ".join(sorted(esp_event)[:8]) or "none"
        raise AnymailWebhookPayloadError(
            f'Not a {self.esp_name} transactional webhook event: it has no "event" field '
            f"(fields: {keys}). Is this payload meant for another ESP's webhook?"
        )

    @staticmethod
    def parse_timestamp(esp_event: dict) -> datetime | None:
        # ts_epoch has millisecond precision, which keeps rapid events
        # (delivered, then opened) in order; ts_event and ts are seconds.
        ts_epoch = esp_event.get("ts_epoch")
        if isinstance(ts_epoch, (int, float)) and not isinstance(ts_epoch, bool):
            # Brevo's own doc sample shows seconds here; real events send milliseconds.
            seconds = ts_epoch / 1000 if ts_epoch > 1e11 else ts_epoch
            return datetime.fromtimestamp(seconds, tz=UTC)
        for field in ("ts_event", "ts"):
            value = esp_event.get(field)
            if value not in (None, ""):
                return datetime.fromtimestamp(int(value), tz=UTC)
        date = esp_event.get("date")
        if date:
            local = datetime.strptime(date, "%Y-%m-%d %H:%M:%S")
            return local.replace(tzinfo=BREVO_LOCAL_TIME).astimezone(UTC)
        return None

    @staticmethod
    def parse_message_id(message_id: Any) -> str | None:
        # The send API returns the id in angle brackets (and events carry it
        # that way); add them if an event ever arrives without.
        if not message_id:
            return None
        message_id = str(message_id).strip()
        if not message_id.startswith("<"):
            message_id = f"<{message_id}>"
        return message_id

    @staticmethod
    def parse_tags(esp_event: dict) -> list[str]:
        tags = esp_event.get("tags")
        if isinstance(tags, list):
            return [str(tag) for tag in tags]
        # The older single "tag" field holds a JSON-encoded list (or a plain tag).
        tag = esp_event.get("tag")
        if not tag:
            return []
        if isinstance(tag, str) and tag.startswith("["):
            try:
                return [str(item) for item in json.loads(tag)]
            except ValueError:
                pass
        return [str(tag)]

    @staticmethod
    def parse_metadata(custom: Any) -> dict:
        # The send backend stores metadata as a JSON object in X-Mailin-custom;
        # anything else there was set by hand and stays in esp_event.
        if isinstance(custom, dict):
            return custom
        if not custom or not isinstance(custom, str):
            return {}
        try:
            metadata = json.loads(custom)
        except ValueError:
            return {}
        return metadata if isinstance(metadata, dict) else {}
