"""Inbound webhook for Brevo (formerly Sendinblue) inbound parsing.

Brevo posts JSON: ``{"items": [...]}``, one item per received email (a call
can carry several). An item has the message's parsed fields: ``Uuid`` (a
list: Brevo's ids for the email), ``MessageId``, ``InReplyTo``, ``From``
(``{"Name", "Address"}``), ``To``/``Cc`` (lists of those), ``ReplyTo``,
``SentAtDate`` (the Date header), ``Subject``, ``Headers`` (an object: a
header that appears more than once is a list of values), ``RawTextBody``,
``RawHtmlBody``, ``ExtractedMarkdownMessage`` (the reply alone, without
quoted history or signature, as Markdown), ``ExtractedMarkdownSignature``,
``SpamScore`` and ``Attachments``.

There is no raw MIME, and no attachment content either: each attachment is
``{"Name", "ContentType", "ContentLength", "ContentID", "DownloadToken"}``,
and its bytes come from ``GET /v3/inbound/attachments/{DownloadToken}``
with the account's API key (BREVO_API_KEY). They are downloaded while the
call is handled, so the stored message is complete. If a download fails
(Brevo's API down, a timeout, a missing or wrong API key) the call is
answered 503: Brevo retries, the raw call is kept, and it can be
reprocessed once the problem is fixed. Nothing is stored half-complete.

The message is rebuilt from the fields (every header Brevo gives, the text
and HTML bodies, the attachments with their declared names, types and
content ids); its multipart boundaries are derived from its content
(AnymailInboundMessage.construct()), so rebuilding the same item again gives
the same bytes (stored once).

Authentication is the tracking webhook's: WEBHOOK_SECRET basic auth in the
webhook URL, or the bearer token Brevo can send (BREVO_WEBHOOK_BEARER_TOKEN).

Reference: https://developers.brevo.com/docs/inbound-parse-webhooks and
https://developers.brevo.com/reference/get-inbound-email-attachment
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formataddr, parseaddr
from typing import Any
from urllib.parse import quote

import requests
from django.http import HttpRequest

from sending.backends.base_requests import DEFAULT_REQUESTS_TIMEOUT, USER_AGENT
from sending.backends.brevo import DEFAULT_API_URL
from sending.exceptions import AnymailWebhookPayloadError, AnymailWebhookRetryLater
from sending.signals import AnymailInboundEvent
from sending.utils import get_anymail_setting
from tracking.webhooks.brevo import BrevoTrackingWebhookView

from ..message import AnymailInboundMessage
from .base import AnymailInboundWebhookView, inbound_event, read_capped


class BrevoInboundWebhookView(AnymailInboundWebhookView, BrevoTrackingWebhookView):
    """Brevo inbound parsing webhook.

    The Brevo tracking view comes second only for its authentication (the
    bearer token settings and check); everything else is the inbound pipeline.
    """

    esp_name = "Brevo"

    def __init__(self, **kwargs: Any) -> None:
        prefix = self.esp_name.upper().replace(" ", "_")
        self.api_key: str | None = get_anymail_setting(
            "api_key", esp_name=prefix, kwargs=kwargs, allow_bare=True, default=None
        )
        api_url = get_anymail_setting(
            "api_url", esp_name=prefix, kwargs=kwargs, default=DEFAULT_API_URL
        )
        self.api_url = api_url if api_url.endswith("/") else api_url + "/"
        self.timeout = get_anymail_setting(
            "requests_timeout", kwargs=kwargs, default=DEFAULT_REQUESTS_TIMEOUT
        )
        super().__init__(**kwargs)

    def parse_events(self, request: HttpRequest) -> list[AnymailInboundEvent]:
        if not request.body:
            # (checked first: an empty request often has no content type either)
            raise AnymailWebhookPayloadError(
                f"Empty {self.esp_name} inbound webhook body: expected JSON."
            )
        self.require_content_type(request, "application/json")
        items = self.inbound_items(self.parse_json_body(request))
        with requests.Session() as session:
            session.headers["User-Agent"] = USER_AGENT
            return [self.parse_item(item, session) for item in items]

    def inbound_items(self, payload: Any) -> list[dict]:
        """The payload's items, or a payload error saying what was posted instead."""
        if isinstance(payload, list) or (isinstance(payload, dict) and "event" in payload):
            raise AnymailWebhookPayloadError(
                f"This is a {self.esp_name} transactional email event, not an inbound parsing "
                f"payload: point Brevo's transactional webhook at "
                f"anymail/{self.esp_key}/tracking/ instead of this inbound URL."
            )
        if not isinstance(payload, dict) or not isinstance(payload.get("items"), list):
            fields = ", ".join(sorted(map(str, payload))[:8]) if isinstance(payload, dict) else ""
            raise AnymailWebhookPayloadError(
                f'Not a {self.esp_name} inbound parsing payload: expected {{"items": [...]}}'
                + (f" (fields: {fields})" if fields else "")
                + ". Is this payload meant for another ESP's webhook?"
            )
        items = payload["items"]
        if not items:
            raise AnymailWebhookPayloadError(
                f"{self.esp_name} inbound payload has an empty list of items."
            )
        for item in items:
            if not isinstance(item, dict):
                raise AnymailWebhookPayloadError(
                    f"{self.esp_name} inbound items must be JSON objects, "
                    f"not {type(item).__name__}."
                )
        return items

    def parse_item(self, item: dict, session: requests.Session) -> AnymailInboundEvent:
        headers = self.headers_object(item.get("Headers"))
        attachments = [
            self.attachment_part(attachment, session)
            for attachment in item.get("Attachments") or []
        ]
        message = AnymailInboundMessage.construct(
            headers=headers,
            from_email=_mailbox(item.get("From")),
            to=_mailbox_list(item.get("To")),
            cc=_mailbox_list(item.get("Cc")),
            subject=item.get("Subject"),
            # Brevo repeats these as fields; they stand in when Headers lacks them.
            date=item.get("SentAtDate") or None,
            message_id=item.get("MessageId") or None,
            in_reply_to=item.get("InReplyTo") or None,
            reply_to=_mailbox(item.get("ReplyTo")),
            text=item.get("RawTextBody"),
            html=item.get("RawHtmlBody"),
            attachments=attachments,
        )
        message.envelope_sender = _header_address(message, "Return-Path")
        message.envelope_recipient = _header_address(message, "Delivered-To")
        if message.envelope_recipient is None:
            message.envelope_recipient = _single_recipient(item.get("Recipients"))
        spam_score = item.get("SpamScore")
        message.spam_score = None if spam_score in (None, "") else float(spam_score)
        message.stripped_text = item.get("ExtractedMarkdownMessage") or None
        uuids = item.get("Uuid")
        if isinstance(uuids, str):
            uuids = [uuids]
        return inbound_event(
            message=message,
            esp_event=item,
            event_id=str(uuids[0]) if uuids else None,
            timestamp=None,  # Brevo doesn't say when it received the message
        )

    # Attachments

    def attachment_part(self, attachment: Any, session: requests.Session) -> AnymailInboundMessage:
        if not isinstance(attachment, dict):
            raise AnymailWebhookPayloadError(
                f"{self.esp_name} inbound attachments must be JSON objects, "
                f"not {type(attachment).__name__}."
            )
        name = attachment.get("Name") or None
        token = attachment.get("DownloadToken")
        if not token or not isinstance(token, str):
            raise AnymailWebhookPayloadError(
                f"{self.esp_name} inbound attachment {name!r} has no DownloadToken, "
                "so its content can't be fetched."
            )
        declared_size = attachment.get("ContentLength")
        if isinstance(declared_size, int) and declared_size > self.max_attachment_bytes:
            # Refused before downloading it.
            raise self.attachment_too_large(name, declared_size)
        content, charset = self.download_attachment(token, name, session)
        content_id = attachment.get("ContentID") or None
        part = AnymailInboundMessage.construct_attachment(
            attachment.get("ContentType") or "application/octet-stream",
            content,
            filename=name,
            content_id=content_id,
            # Brevo gives no disposition: a part with a Content-ID is one the
            # HTML refers to (cid:), so it's inline.
            inline=bool(content_id),
        )
        if charset and part.get_content_maintype() == "text":
            part.set_param("charset", charset)
        return part

    def download_attachment(
        self, token: str, name: str | None, session: requests.Session
    ) -> tuple[bytes, str | None]:
        """The attachment's bytes (and charset, for text) from Brevo's API."""
        if not self.api_key:
            raise AnymailWebhookRetryLater(
                f"{self.esp_name} inbound attachment {name!r} must be downloaded from "
                f"{self.esp_name}'s API: set {self.setting_prefix}_API_KEY in your ANYMAIL "
                "settings, then reprocess this webhook call."
            )
        # The token comes from the request: quoted, so it can only ever name an attachment.
        url = f"{self.api_url}inbound/attachments/{quote(token, safe='')}"
        try:
            with session.get(
                url, headers={"api-key": self.api_key}, timeout=self.timeout, stream=True
            ) as response:
                if response.status_code != 200:
                    raise AnymailWebhookRetryLater(
                        f"{self.esp_name} API answered {response.status_code} to the download "
                        f"of inbound attachment {name!r}: {response.text[:500]}"
                    )
                content = read_capped(
                    response,
                    limit=self.max_attachment_bytes,
                    what=f"Attachment {name or '(unnamed)'!r}",
                    setting="INBOUND_MAX_ATTACHMENT_BYTES",
                )
                charset = _content_type_charset(response.headers.get("Content-Type"))
        except requests.RequestException as err:
            raise AnymailWebhookRetryLater(
                f"Couldn't download inbound attachment {name!r} from {self.esp_name}: {err}"
            ) from err
        return content, charset


# Field conversions


def _mailbox(value: Any) -> str | None:
    """Brevo's {"Name", "Address"} as a header address."""
    if not isinstance(value, dict) or not value.get("Address"):
        return None
    return formataddr((value.get("Name") or "", value["Address"]))


def _mailbox_list(value: Any) -> str | None:
    addresses = [_mailbox(item) for item in value or []] if isinstance(value, list) else []
    addresses = [address for address in addresses if address]
    return ", ".join(addresses) or None


def _single_recipient(recipients: Any) -> str | None:
    """The envelope recipient, when Brevo lists exactly one (as strings or mailboxes)."""
    if not isinstance(recipients, list) or len(recipients) != 1:
        return None
    [recipient] = recipients
    if isinstance(recipient, dict):
        recipient = recipient.get("Address")
    return str(recipient) if recipient else None


def _header_address(message: AnymailInboundMessage, name: str) -> str | None:
    """The addr-spec in the (first) header name, e.g. Return-Path: <sender@example.com>."""
    value = message.get(name)
    if value is None:
        return None
    address = parseaddr(str(value))[1]
    return address or None


def _content_type_charset(content_type: str | None) -> str | None:
    if not content_type:
        return None
    parsed = EmailMessage()
    parsed["Content-Type"] = content_type
    return parsed.get_content_charset()
