"""Inbound webhook for Resend receiving: the ``email.received`` webhook event.

Resend sends it through Svix like its other webhook events: one JSON event
per call, ``{"type": "email.received", "created_at", "data": {"email_id",
"created_at", "from", "to": [...], "cc", "bcc", "received_for": [...],
"message_id", "subject", "attachments": [{"id", "filename", "content_type",
"content_disposition", "content_id"}]}}``. It carries metadata only: "You
must call the Received emails API or the Attachments API to retrieve" the
body, headers and attachments. So, while the call is handled:

1. ``GET {RESEND_API_URL}emails/receiving/{email_id}?html_format=cid`` with
   ``Authorization: Bearer {RESEND_API_KEY}`` (the send backend's settings)
   gives the received email, including ``raw.download_url``: a signed URL to
   "the original email file including all attachments";
2. that file is downloaded (without the API key: the URL is signed) and
   parsed and stored exactly as received.

When ``raw`` is null, the message is rebuilt from the API's fields instead
(``headers``, ``text``, ``html`` with its ``cid:`` references kept, and each
attachment downloaded from ``GET .../emails/receiving/{email_id}/attachments``
with its declared name, type, disposition and content id), with boundaries
derived from its content so a rebuild gives the same bytes.

If Resend can't be reached, answers an error (including a 401 for a wrong
key or a 404), or RESEND_API_KEY isn't set, the call is answered 503: Resend
retries (for about a day; it can also be replayed from Resend's dashboard),
the raw call is kept (marked failed, with the error), and it can be
reprocessed once the problem is fixed. Nothing is
stored half-complete. A file over the size limits is a 413
(INBOUND_MAX_BODY_BYTES for the raw message, INBOUND_MAX_ATTACHMENT_BYTES per
attachment). REQUESTS_TIMEOUT applies to each request.

``data.email_id`` is the event id. ``received_for`` ("addresses the email was
received for") is the envelope recipient when it names one address; Resend
gives no envelope sender or spam verdict.

Signature: the tracking webhook's Svix check, inherited from it
(RESEND_SIGNING_SECRET; each Resend webhook endpoint has its own signing
secret, so list both when tracking and inbound use separate endpoints).

References: https://resend.com/docs/dashboard/receiving/introduction,
https://resend.com/docs/webhooks/emails/received,
https://resend.com/docs/api-reference/emails/retrieve-received-email,
https://resend.com/docs/api-reference/attachments/list-received-email-attachments,
https://resend.com/docs/dashboard/receiving/attachments,
https://resend.com/docs/webhooks/retries-and-replays
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import requests
from django.http import HttpRequest

from sending.backends.base_requests import DEFAULT_REQUESTS_TIMEOUT, USER_AGENT
from sending.backends.resend import DEFAULT_API_URL
from sending.exceptions import AnymailWebhookPayloadError, AnymailWebhookRetryLater
from sending.signals import AnymailInboundEvent
from sending.utils import get_anymail_setting
from tracking.webhooks.resend import ResendTrackingWebhookView, parse_datetime

from ..message import AnymailInboundMessage
from .base import AnymailInboundWebhookView, inbound_event, read_capped

logger = logging.getLogger(__name__)

RECEIVED = "email.received"
ATTACHMENTS_PAGE_SIZE = 100  # the List attachments maximum


class ResendInboundWebhookView(AnymailInboundWebhookView, ResendTrackingWebhookView):
    """Resend email.received events, completed from Resend's Receiving API.

    The Resend tracking view comes second for its signature check and
    settings; everything else is the inbound pipeline.
    """

    esp_name = "Resend"

    def __init__(self, **kwargs: Any) -> None:
        self.api_key: str | None = get_anymail_setting(
            "api_key", esp_name="RESEND", kwargs=kwargs, allow_bare=True, default=None
        )
        api_url = get_anymail_setting(
            "api_url", esp_name="RESEND", kwargs=kwargs, default=DEFAULT_API_URL
        )
        self.api_url = api_url if api_url.endswith("/") else api_url + "/"
        self.timeout = get_anymail_setting(
            "requests_timeout", kwargs=kwargs, default=DEFAULT_REQUESTS_TIMEOUT
        )
        super().__init__(**kwargs)

    # Parsing

    def parse_events(self, request: HttpRequest) -> list[AnymailInboundEvent]:
        if not request.body:
            raise AnymailWebhookPayloadError("Empty Resend inbound webhook body: expected JSON.")
        self.require_content_type(request, "application/json")
        payload = self.parse_json_body(request)
        email_id = self.received_email_id(payload)
        with requests.Session() as session:
            session.headers["User-Agent"] = USER_AGENT
            email = self.api_get(
                session, f"emails/receiving/{quote(email_id, safe='')}", html_format="cid"
            )
            raw_file = email.get("raw")
            if isinstance(raw_file, dict) and raw_file.get("download_url"):
                raw = self.download(
                    session,
                    raw_file["download_url"],
                    what=f"raw email {email_id}",
                    limit=self.max_body_bytes,
                    setting="INBOUND_MAX_BODY_BYTES",
                )
                message = AnymailInboundMessage.parse_raw_mime_bytes(raw)
            else:
                raw = None
                message = self.rebuild_message(session, email_id, email)

        data = payload["data"]
        received_for = data.get("received_for") or email.get("received_for")
        if isinstance(received_for, list) and len(received_for) == 1:
            message.envelope_recipient = str(received_for[0]) or None
        created_at = data.get("created_at") or payload.get("created_at")
        return [
            inbound_event(
                message=message,
                esp_event=payload,
                raw=raw,
                event_id=email_id,
                timestamp=parse_datetime(created_at) if created_at else None,
            )
        ]

    def received_email_id(self, payload: Any) -> str:
        """The email_id of an email.received event, or a payload error saying what came instead."""
        if (
            not isinstance(payload, dict)
            or not isinstance(payload.get("type"), str)
            or not isinstance(payload.get("data"), dict)
        ):
            raise AnymailWebhookPayloadError(
                'Resend webhook payload must be an object with "type" and "data" keys: '
                "is this another ESP's webhook posted to the Resend URL?"
            )
        if payload["type"] != RECEIVED:
            raise AnymailWebhookPayloadError(
                f"Resend {payload['type']} events were posted to the inbound webhook, which "
                f"takes {RECEIVED} only: subscribe anymail/resend/tracking/ to them instead."
            )
        email_id = payload["data"].get("email_id")
        if not isinstance(email_id, str) or not email_id.strip():
            raise AnymailWebhookPayloadError(f"Resend {RECEIVED} event has no data.email_id.")
        return email_id

    def rebuild_message(
        self, session: requests.Session, email_id: str, email: dict
    ) -> AnymailInboundMessage:
        """The message rebuilt from the Receiving API's fields (when it has no raw file)."""
        attachments = []
        if email.get("attachments") != []:  # listed only when there may be some
            attachments = [
                self.attachment(session, email_id, attachment)
                for attachment in self.list_attachments(session, email_id)
            ]
        headers = email.get("headers")
        return AnymailInboundMessage.construct(
            headers=headers if isinstance(headers, dict) else None,
            from_email=email.get("from") or None,
            to=email.get("to") or None,
            cc=email.get("cc") or None,
            reply_to=email.get("reply_to") or None,
            subject=email.get("subject"),
            message_id=email.get("message_id") or None,
            text=email.get("text"),
            html=email.get("html"),
            attachments=attachments,
        )

    def list_attachments(self, session: requests.Session, email_id: str) -> list[dict]:
        path = f"emails/receiving/{quote(email_id, safe='')}/attachments"
        attachments: list[dict] = []
        params: dict[str, Any] = {"limit": ATTACHMENTS_PAGE_SIZE}
        while True:
            page = self.api_get(session, path, **params)
            items = page.get("data")
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise AnymailWebhookRetryLater(
                    f"Resend's attachment list for received email {email_id} has no data list."
                )
            attachments += items
            if not (page.get("has_more") and items and items[-1].get("id")):
                return attachments
            params["after"] = items[-1]["id"]

    def attachment(
        self, session: requests.Session, email_id: str, attachment: dict
    ) -> AnymailInboundMessage:
        filename = attachment.get("filename") or None
        url = attachment.get("download_url")
        if not url:
            raise AnymailWebhookRetryLater(
                f"Resend gave no download_url for attachment {filename!r} of received "
                f"email {email_id}."
            )
        content = self.download(
            session,
            url,
            what=f"attachment {filename!r} of received email {email_id}",
            limit=self.max_attachment_bytes,
            setting="INBOUND_MAX_ATTACHMENT_BYTES",
        )
        content_type = str(attachment.get("content_type") or "").split(";")[0].strip()
        if content_type.count("/") != 1:
            content_type = "application/octet-stream"
        return AnymailInboundMessage.construct_attachment(
            content_type,
            content,
            filename=filename,
            content_id=attachment.get("content_id") or None,
            inline=attachment.get("content_disposition") == "inline",
        )

    # Resend's API

    def api_get(self, session: requests.Session, path: str, **params: Any) -> dict:
        """GET a Resend API path; its JSON object, or AnymailWebhookRetryLater."""
        if not self.api_key:
            raise AnymailWebhookRetryLater(
                "A Resend received email must be fetched from Resend's API: set "
                "RESEND_API_KEY in your ANYMAIL settings, then reprocess this webhook call."
            )
        try:
            response = session.get(
                self.api_url + path,
                params=params,
                headers={"Authorization": f"Bearer {self.api_key}"},
                timeout=self.timeout,
            )
        except requests.RequestException as err:
            raise self.unavailable(f"Couldn't reach Resend's API for {path}: {err}") from err
        if response.status_code != 200:
            raise self.unavailable(
                f"Resend's API answered {response.status_code} to GET {path}: {response.text[:500]}"
            )
        try:
            body = response.json()
        except ValueError as err:
            raise self.unavailable(f"Resend's API answer to GET {path} is not JSON.") from err
        if not isinstance(body, dict):
            raise self.unavailable(f"Resend's API answer to GET {path} is not a JSON object.")
        return body

    def download(
        self, session: requests.Session, url: str, what: str, limit: int, setting: str
    ) -> bytes:
        """Download a signed Resend file URL, up to limit bytes."""
        try:
            with session.get(url, timeout=self.timeout, stream=True) as response:
                if response.status_code != 200:
                    raise self.unavailable(
                        f"Resend's file server answered {response.status_code} to the download "
                        f"of {what}."
                    )
                return read_capped(response, limit=limit, what=f"Resend {what}", setting=setting)
        except requests.RequestException as err:
            raise self.unavailable(f"Couldn't download {what} from Resend: {err}") from err

    @staticmethod
    def unavailable(error: str) -> AnymailWebhookRetryLater:
        logger.warning("Resend inbound: %s", error)
        return AnymailWebhookRetryLater(f"{error} (answered 503 so Resend retries; call kept)")
