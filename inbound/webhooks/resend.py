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
derived from the email so a rebuild gives the same bytes.

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

import hashlib
import json
import logging
import re
from typing import Any
from urllib.parse import quote

import requests
from django.http import HttpRequest

from sending.backends.base_requests import DEFAULT_REQUESTS_TIMEOUT, USER_AGENT
from sending.backends.resend import DEFAULT_API_URL
from sending.exceptions import AnymailWebhookPayloadError
from sending.signals import AnymailInboundEvent, EventType
from sending.utils import get_anymail_setting
from tracking.webhooks.resend import ResendTrackingWebhookView, parse_datetime

from ..message import AnymailInboundMessage
from .base import AnymailInboundWebhookView, InboundTooLarge

logger = logging.getLogger(__name__)

RECEIVED = "email.received"
DOWNLOAD_CHUNK_BYTES = 64 * 1024
ATTACHMENTS_PAGE_SIZE = 100  # the List attachments maximum
# RFC 5322 field names: printable ASCII except the colon.
HEADER_NAME = re.compile(r"^[!-9;-~]+$")


class ResendEmailUnavailable(AnymailWebhookPayloadError):
    """The received email couldn't be fetched from Resend (answered 503, so Resend retries)."""

    http_status = 503


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
        event = AnymailInboundEvent(
            event_type=EventType.INBOUND,
            timestamp=parse_datetime(created_at) if created_at else None,
            event_id=email_id,
            esp_event=payload,
            message=message,
        )
        if raw is not None:
            event.raw_mime = raw
        return [event]

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
        headers = header_items(email.get("headers"))
        names = {name.lower() for name, _ in headers}
        for header, field in (("Message-ID", "message_id"), ("Reply-To", "reply_to")):
            value = address_list(email.get(field))
            if value and header.lower() not in names:
                headers.append((header, value))
        attachments = []
        if email.get("attachments") != []:  # listed only when there may be some
            attachments = [
                self.attachment(session, email_id, attachment)
                for attachment in self.list_attachments(session, email_id)
            ]
        message = AnymailInboundMessage.construct(
            headers=headers,
            from_email=email.get("from") or None,
            to=address_list(email.get("to")),
            cc=address_list(email.get("cc")),
            subject=email.get("subject"),
            text=email.get("text"),
            html=email.get("html"),
            attachments=attachments,
        )
        set_lone_body(message, email.get("text"), email.get("html"))
        set_stable_boundaries(message, email)
        return message

    def list_attachments(self, session: requests.Session, email_id: str) -> list[dict]:
        path = f"emails/receiving/{quote(email_id, safe='')}/attachments"
        attachments: list[dict] = []
        params: dict[str, Any] = {"limit": ATTACHMENTS_PAGE_SIZE}
        while True:
            page = self.api_get(session, path, **params)
            items = page.get("data")
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise ResendEmailUnavailable(
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
            raise ResendEmailUnavailable(
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
        """GET a Resend API path; its JSON object, or ResendEmailUnavailable."""
        if not self.api_key:
            raise ResendEmailUnavailable(
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
                chunks, size = [], 0
                for chunk in response.iter_content(DOWNLOAD_CHUNK_BYTES):
                    size += len(chunk)
                    if size > limit:
                        raise InboundTooLarge(
                            f"Resend {what} is over the {limit} bytes allowed "
                            f'(MAILHUB["{setting}"]).'
                        )
                    chunks.append(chunk)
        except requests.RequestException as err:
            raise self.unavailable(f"Couldn't download {what} from Resend: {err}") from err
        return b"".join(chunks)

    @staticmethod
    def unavailable(error: str) -> ResendEmailUnavailable:
        logger.warning("Resend inbound: %s", error)
        return ResendEmailUnavailable(f"{error} (answered 503 so Resend retries; call kept)")


# Field conversions


def header_items(headers: Any) -> list[tuple[str, str]]:
    """The API's headers object as (name, value) pairs, values unfolded to one line."""
    if not isinstance(headers, dict):
        return []
    items = []
    for name, values in headers.items():
        if not HEADER_NAME.match(str(name)):
            continue  # not a header name; it stays in the API's answer
        for value in values if isinstance(values, list) else [values]:
            if value is not None:
                items.append((str(name), re.sub(r"\s*[\r\n]+\s*", " ", str(value)).strip()))
    return items


def address_list(value: Any) -> str | None:
    if isinstance(value, list):
        return ", ".join(str(item) for item in value if item) or None
    return str(value) if value else None


def set_stable_boundaries(message: AnymailInboundMessage, email: dict) -> None:
    """Derive each multipart's boundary from the received email.

    The rebuilt message is what's stored, once per content hash: random
    boundaries would make each rebuild (a retry, a reprocessing) a "new" message.
    """
    seed = json.dumps(email, sort_keys=True, default=str).encode()
    digest = hashlib.sha256(seed).hexdigest()[:32]
    for index, part in enumerate(part for part in message.walk() if part.is_multipart()):
        part.set_boundary(f"=_resend_{digest}_{index}")


def set_lone_body(message: AnymailInboundMessage, text: str | None, html: str | None) -> None:
    """Set a message's only body again, the way the generator can write it.

    construct() copies a lone text body's payload decoded, and as_bytes()
    then fails on its non-ASCII characters (it expects them 8-bit, as
    set_content() stores them). Multipart messages are unaffected.
    """
    if message.is_multipart() or (text is None) == (html is None):
        return
    subtype, body = ("plain", text) if text is not None else ("html", html)
    message.set_content(body, subtype=subtype, charset="utf-8")
