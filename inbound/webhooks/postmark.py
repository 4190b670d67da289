"""Inbound webhook for Postmark (an inbound stream's webhook URL).

Postmark POSTs each received message as one JSON object: ``From``,
``FromName``, ``FromFull`` (``{Email, Name, MailboxHash}``), ``To``/``ToFull``,
``Cc``/``CcFull``, ``Bcc``/``BccFull``, ``ReplyTo``, ``Subject``, ``Date``,
``OriginalRecipient`` (the address it was delivered to), ``MailboxHash``,
``MessageID`` (Postmark's id for it), ``MessageStream``, ``Tag``,
``TextBody``, ``HtmlBody``, ``StrippedTextReply``, ``Headers`` (the other
headers, as ``[{Name, Value}]``, in order, with SpamAssassin's
``X-Spam-Status``, ``X-Spam-Score`` and ``X-Spam-Tests``) and
``Attachments`` (``[{Name, Content (base64), ContentType, ContentLength,
ContentID}]``). The message is rebuilt from these fields.

With the server's RawEmailEnabled setting on ("enable raw email to be sent
with inbound"), ``RawEmail`` also holds the message as received: it is parsed
and stored instead (the other fields still supply the envelope, the spam
verdict and the stripped text).

Postmark doesn't sign its webhooks: secure the URL with basic auth
(WEBHOOK_SECRET, as credentials in the URL). It retries a call that isn't
answered 200 ten times, from 1 minute to 6 hours apart, and stops at a 403.

Reference: https://postmarkapp.com/developer/webhooks/inbound-webhook and
https://postmarkapp.com/developer/user-guide/inbound/parse-an-email
"""

from __future__ import annotations

from collections.abc import Iterable
from email.utils import formataddr

from django.http import HttpRequest

from sending.exceptions import AnymailWebhookPayloadError
from sending.signals import AnymailInboundEvent
from tracking.webhooks.base import b64decode_or_none

from ..message import AnymailInboundMessage
from .base import AnymailInboundWebhookView, inbound_event


class PostmarkInboundWebhookView(AnymailInboundWebhookView):
    esp_name = "Postmark"

    def parse_events(self, request: HttpRequest) -> list[AnymailInboundEvent]:
        self.require_content_type(request, "application/json")
        payload = self.parse_json_body(request)
        if not isinstance(payload, dict):
            raise AnymailWebhookPayloadError(
                "Postmark's inbound webhook posts one JSON object per message, not a JSON "
                f"{type(payload).__name__}: is another ESP's webhook posted to the Postmark "
                "inbound URL?"
            )
        if "RecordType" in payload:
            raise AnymailWebhookPayloadError(
                f"This is a Postmark {payload['RecordType']} tracking webhook: point it at the "
                "Postmark tracking URL, not the inbound one."
            )
        if not any(field in payload for field in ("FromFull", "From", "RawEmail")):
            raise AnymailWebhookPayloadError(
                "Postmark inbound payload has no From, FromFull or RawEmail: is another ESP's "
                "webhook posted to the Postmark inbound URL?"
            )

        headers = [(str(h["Name"]), str(h["Value"])) for h in payload.get("Headers") or []]
        raw = None
        if payload.get("RawEmail"):
            # JSON carries the raw message as text; its UTF-8 bytes are the
            # closest to what Postmark received.
            raw = str(payload["RawEmail"]).encode("utf-8")
            message = AnymailInboundMessage.parse_raw_mime_bytes(raw)
        else:
            message = construct_message(payload, headers)

        return_path = header(headers, "Return-Path")
        message.envelope_sender = return_path.strip().strip("<>").strip() or None
        message.envelope_recipient = payload.get("OriginalRecipient") or None
        message.stripped_text = payload.get("StrippedTextReply") or None
        spam_status = header(headers, "X-Spam-Status").strip().lower()
        message.spam_detected = spam_status.startswith("yes") if spam_status else None
        try:
            message.spam_score = float(header(headers, "X-Spam-Score"))
        except ValueError:
            message.spam_score = None

        return [
            inbound_event(
                message=message,
                esp_event=payload,
                raw=raw,
                event_id=payload.get("MessageID") or None,
                timestamp=None,
            )
        ]


def construct_message(payload: dict, headers: list[tuple[str, str]]) -> AnymailInboundMessage:
    """The message rebuilt from Postmark's fields (the headers it lifts out go back in)."""
    attachments = [attachment(item) for item in payload.get("Attachments") or []]
    from_full = payload.get("FromFull")
    return AnymailInboundMessage.construct(
        headers=headers,
        from_email=addresses([from_full] if from_full else None) or payload.get("From") or None,
        to=addresses(payload.get("ToFull")) or payload.get("To") or None,
        cc=addresses(payload.get("CcFull")) or payload.get("Cc") or None,
        bcc=addresses(payload.get("BccFull")) or payload.get("Bcc") or None,
        reply_to=payload.get("ReplyTo") or None,
        subject=payload.get("Subject"),
        date=payload.get("Date") or None,
        text=payload.get("TextBody") or None,
        html=payload.get("HtmlBody") or None,
        attachments=attachments,
    )


def attachment(item: dict) -> AnymailInboundMessage:
    name = item.get("Name") or None
    content = b64decode_or_none(item.get("Content") or "")
    if content is None:
        raise AnymailWebhookPayloadError(
            f"Postmark inbound attachment {name!r} has Content that isn't valid base64."
        )
    content_id = item.get("ContentID") or None
    return AnymailInboundMessage.construct_attachment(
        item.get("ContentType") or "application/octet-stream",
        content,
        filename=name,
        content_id=content_id,
        # Postmark doesn't pass the disposition on; a part with a Content-ID
        # is one the HTML refers to.
        inline=content_id is not None,
    )


def addresses(full: Iterable[dict] | None) -> str | None:
    """An address header from Postmark's [{Email, Name}] list."""
    formatted = [formataddr((item.get("Name") or "", item["Email"])) for item in full or []]
    return ", ".join(formatted) or None


def header(headers: list[tuple[str, str]], name: str) -> str:
    """The first header called name (any case), or ""."""
    return next((value for found, value in headers if found.lower() == name.lower()), "")
