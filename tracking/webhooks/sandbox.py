"""Tracking webhook for the sandbox ESP (sending.backends.sandbox).

Payload: ``{"events": [{"id", "event", "timestamp" (ISO 8601), "message_id",
"recipient", "tags", "metadata", "reason"?, "smtp_response"?, "user_agent"?,
"url"?}]}``.
"""

from __future__ import annotations

import io
from datetime import datetime

from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpRequest
from django.urls import reverse

from sending.exceptions import AnymailWebhookPayloadError
from sending.signals import AnymailTrackingEvent, EventType, RejectReason
from sending.utils import get_anymail_setting

from .base import AnymailBaseWebhookView


class SandboxTrackingWebhookView(AnymailBaseWebhookView):
    esp_name = "Sandbox"
    # The sandbox posts in-process; basic auth is checked when it's configured.
    warn_if_no_basic_auth = False

    def parse_events(self, request: HttpRequest) -> list[AnymailTrackingEvent]:
        self.require_content_type(request, "application/json")
        payload = self.parse_json_body(request)
        if not isinstance(payload, dict) or not isinstance(payload.get("events"), list):
            raise AnymailWebhookPayloadError(
                'Sandbox webhook payload must be an object with an "events" list.'
            )
        return [self.parse_event(event) for event in payload["events"]]

    def parse_event(self, event: dict) -> AnymailTrackingEvent:
        event_type = event["event"]
        if event_type not in EventType.values:
            event_type = EventType.UNKNOWN
        reason = event.get("reason")
        return AnymailTrackingEvent(
            event_type=event_type,
            timestamp=datetime.fromisoformat(event["timestamp"]),
            event_id=event.get("id"),
            message_id=event.get("message_id"),
            recipient=event.get("recipient"),
            reject_reason=reason if reason in RejectReason.values else None,
            mta_response=event.get("smtp_response"),
            user_agent=event.get("user_agent"),
            click_url=event.get("url"),
            tags=event.get("tags") or [],
            metadata=event.get("metadata") or {},
            esp_event=event,
        )


def deliver_sandbox_events(body: bytes) -> None:
    """Post a sandbox event payload to the sandbox webhook view, in-process.

    Goes through the whole webhook pipeline (auth, raw storage, parsing,
    recording, signals), as a real ESP's HTTP call would.
    """
    headers = {"CONTENT_TYPE": "application/json"}
    secrets = get_anymail_setting("webhook_secret", default=[])
    if isinstance(secrets, str):
        secrets = [secrets]
    if secrets:
        headers["HTTP_AUTHORIZATION"] = AnymailBaseWebhookView._basic_auth_header(secrets[0])
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": reverse("sandbox_tracking_webhook"),
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "CONTENT_LENGTH": str(len(body)),
        **headers,
    }
    SandboxTrackingWebhookView.as_view()(WSGIRequest(environ))
