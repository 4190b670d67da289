"""MailerSend: send through MailerSend's email API v1.

Two endpoints, JSON in, authenticated by ``Authorization: Bearer <token>``:

- ``POST /v1/email``: one message. MailerSend answers ``202`` with the
  message id in the ``X-Message-Id`` header and an empty body, or a JSON
  body of ``warnings`` when it suppressed some (``SOME_SUPPRESSED``) or all
  (``ALL_SUPPRESSED``, and then no message id) of the recipients;
- ``POST /v1/bulk-email``: a JSON list of messages, answered
  ``202 {"message": "The bulk email is being processed.", "bulk_email_id": "..."}``.
  MailerSend validates and sends them later, so every recipient's status
  is "unknown" and the message id is ``"bulk:<bulk_email_id>"`` (poll
  ``GET /v1/bulk-email/{bulk_email_id}`` for the outcome).

A batch send (merge_data) to more than one "to" recipient needs
MAILERSEND_BATCH_SEND_MODE (or esp_extra "batch_send_mode"): "use-bulk-email"
sends each "to" its own message through the bulk endpoint; "expose-to-list"
sends one message with per-recipient ``personalization``, which shows every
recipient the whole To list. esp_extra "api_token" and "batch_send_mode"
(also spelled "api-token" and "batch-send-mode") override the settings for
one message; the rest of esp_extra is merged into each message sent.

Reference: https://developers.mailersend.com/api/v1/email.html,
https://developers.mailersend.com/general.html (errors) and
https://www.mailersend.com/help/custom-headers.
"""

from __future__ import annotations

import copy
import mimetypes
from datetime import datetime
from typing import Any

import requests
from django.core.mail.message import EmailMessage

from ..exceptions import (
    AnymailConfigurationError,
    AnymailRequestsAPIError,
    AnymailUnsupportedFeature,
)
from ..message import AnymailRecipientStatus
from ..utils import Attachment, EmailAddress, get_anymail_setting, update_deep
from .base_requests import AnymailRequestsBackend, RequestsPayload

DEFAULT_API_URL = "https://api.mailersend.com/v1/"

USE_BULK_EMAIL = "use-bulk-email"
EXPOSE_TO_LIST = "expose-to-list"
BATCH_SEND_MODES = (None, USE_BULK_EMAIL, EXPOSE_TO_LIST)

# "tags: Limit is max 5 tags."
MAX_TAGS = 5

# Warning types of a 202 answer whose "recipients" were not sent to.
SUPPRESSED_WARNINGS = frozenset({"SOME_SUPPRESSED", "ALL_SUPPRESSED"})

# Precedence values that mean "bulk mail" (RFC 2076); MailerSend only takes a
# boolean precedence_bulk, overriding the domain's "Add precedence bulk header".
BULK_PRECEDENCE = frozenset({"bulk", "list", "junk"})


def validated_batch_send_mode(mode: Any, setting: str) -> str | None:
    if mode not in BATCH_SEND_MODES:
        choices = ", ".join(repr(choice) for choice in BATCH_SEND_MODES)
        raise AnymailConfigurationError(f"{setting} must be one of {choices}, not {mode!r}.")
    return mode


class MailerSendPayload(RequestsPayload):
    """A message as the JSON body of MailerSend's ``email`` or ``bulk-email`` call."""

    feature_limits = {
        "reply_to": "one address",
        "tags": "up to 5 tags",
        "extra_headers": "custom headers need a Professional or Enterprise plan",
        "merge_data": "more than one 'to' needs MAILERSEND_BATCH_SEND_MODE",
        "merge_global_data": "copied into every recipient's personalization",
        "attachments": "MailerSend takes the type from the filename extension",
    }

    def __init__(
        self,
        message: EmailMessage,
        defaults: dict,
        backend: EmailBackend,
        suppressed: set[str] = frozenset(),
        *args: Any,
        **kwargs: Any,
    ) -> None:
        self.batch_send_mode = backend.batch_send_mode
        headers = {
            "Authorization": f"Bearer {backend.api_token}",
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
        super().__init__(message, defaults, backend, suppressed, *args, headers=headers, **kwargs)
        # Every setter (esp_extra last) has run: choose the endpoint now, so
        # a batch without a mode fails before anything is recorded or sent.
        self.use_bulk_email = self.choose_bulk_email()

    def choose_bulk_email(self) -> bool:
        if not self.is_batch() or len(self.recipients_by_kind["to"]) <= 1:
            return False
        if self.batch_send_mode is None:
            # No safe default: one choice exposes every address, the other
            # loses synchronous status. (Not ignorable, for the same reason.)
            raise AnymailUnsupportedFeature(
                "MailerSend needs a batch send mode to send merge_data to more than one "
                "'to' recipient: set MAILERSEND_BATCH_SEND_MODE (or esp_extra "
                f"'batch_send_mode') to '{USE_BULK_EMAIL}' or '{EXPOSE_TO_LIST}'.",
                email_message=self.message,
                payload=self,
                backend=self.backend,
            )
        return self.batch_send_mode == USE_BULK_EMAIL

    def get_api_endpoint(self) -> str:
        return "bulk-email" if self.use_bulk_email else "email"

    def init_payload(self) -> None:
        self.data: dict[str, Any] = {}
        self.merge_data: dict[str, dict] = {}
        self.merge_global_data: dict[str, Any] = {}
        self.esp_extra: dict[str, Any] = {}

    def personalization(self, to: list[dict]) -> list[dict]:
        # MailerSend has no global personalization: give every "to" the
        # global data, overlaid with its own.
        personalization = []
        for recipient in to:
            data = {**self.merge_global_data, **self.merge_data.get(recipient["email"], {})}
            if data:
                personalization.append({"email": recipient["email"], "data": data})
        return personalization

    def serialize_data(self) -> str:
        if self.use_bulk_email:
            messages = []
            for recipient in self.data["to"]:
                single = copy.deepcopy(self.data)
                single["to"] = [recipient]
                personalization = self.personalization([recipient])
                if personalization:
                    single["personalization"] = personalization
                messages.append(update_deep(single, copy.deepcopy(self.esp_extra)))
            return self.serialize_json(messages)

        data = dict(self.data)
        personalization = self.personalization(data.get("to", []))
        if personalization:
            data["personalization"] = personalization
        return self.serialize_json(update_deep(data, self.esp_extra))

    # Setters

    @staticmethod
    def email_object(email: EmailAddress) -> dict[str, str]:
        obj = {"email": email.addr_spec}
        if email.display_name:
            obj["name"] = email.display_name
        return obj

    def set_from_email(self, email: EmailAddress) -> None:
        self.data["from"] = self.email_object(email)

    def set_recipients(self, recipient_type: str, emails: list[EmailAddress]) -> None:
        # MailerSend allows up to 50 "to" and 10 each of cc and bcc, and says
        # so in a 422 if there are more.
        if emails:
            self.data[recipient_type] = [self.email_object(email) for email in emails]

    def set_subject(self, subject: str) -> None:
        if subject:  # optional with a template that has a default subject
            self.data["subject"] = subject

    def set_reply_to(self, emails: list[EmailAddress]) -> None:
        if len(emails) > 1:
            self.unsupported_feature("multiple reply_to addresses")
        if emails:
            self.data["reply_to"] = self.email_object(emails[0])

    def set_extra_headers(self, headers: dict) -> None:
        # The threading and list headers are their own API params (on every
        # paid plan); any other header goes in "headers", which MailerSend
        # accepts only on Professional and Enterprise plans.
        custom = []
        for name, value in headers.items():
            field = name.lower()
            value = str(value)
            if field == "in-reply-to":
                self.data["in_reply_to"] = value.strip().strip("<>")
            elif field == "references":
                self.data["references"] = value.split()
            elif field == "precedence":
                self.data["precedence_bulk"] = value.strip().lower() in BULK_PRECEDENCE
            elif field == "list-unsubscribe":
                self.data["list_unsubscribe"] = value
            else:
                custom.append({"name": name, "value": value})
        if custom:
            self.data["headers"] = custom

    def set_text_body(self, body: str) -> None:
        if body:
            self.data["text"] = body

    def set_html_body(self, body: str) -> None:
        self.data["html"] = body

    def add_attachment(self, attachment: Attachment) -> None:
        item = {
            "content": attachment.b64content,
            "filename": self.attachment_filename(attachment),
            "disposition": "inline" if attachment.inline else "attachment",
        }
        if attachment.inline and attachment.cid:
            item["id"] = attachment.cid  # referenced as <img src="cid:...">
        self.data.setdefault("attachments", []).append(item)

    @staticmethod
    def attachment_filename(attachment: Attachment) -> str:
        # Every attachment, inline ones too, needs a filename, and MailerSend
        # sets the content type from its extension.
        if attachment.name:
            return attachment.name
        extension = mimetypes.guess_extension(attachment.mimetype) or ""
        return f"attachment{extension}"

    def set_send_at(self, send_at: datetime) -> None:
        # A unix timestamp, at most 72 hours ahead.
        self.data["send_at"] = int(send_at.timestamp())

    def set_tags(self, tags: list) -> None:
        if len(tags) > MAX_TAGS:
            self.unsupported_feature(f"more than {MAX_TAGS} tags")
        if tags:
            self.data["tags"] = [str(tag) for tag in tags[:MAX_TAGS]]

    def set_track_clicks(self, track_clicks: bool) -> None:
        self.data.setdefault("settings", {})["track_clicks"] = bool(track_clicks)

    def set_track_opens(self, track_opens: bool) -> None:
        self.data.setdefault("settings", {})["track_opens"] = bool(track_opens)

    def set_template_id(self, template_id: str) -> None:
        self.data["template_id"] = str(template_id)

    def set_merge_data(self, merge_data: dict) -> None:
        self.merge_data = merge_data

    def set_merge_global_data(self, merge_global_data: dict) -> None:
        self.merge_global_data = merge_global_data

    def set_esp_extra(self, extra: dict) -> None:
        extra = dict(extra)
        for key in ("api_token", "api-token"):
            if key in extra:
                self.headers["Authorization"] = f"Bearer {extra.pop(key)}"
        for key in ("batch_send_mode", "batch-send-mode"):
            if key in extra:
                self.batch_send_mode = validated_batch_send_mode(
                    extra.pop(key), f"esp_extra['{key}']"
                )
        self.esp_extra = extra


class EmailBackend(AnymailRequestsBackend):
    """Send email through MailerSend's email API."""

    esp_name = "MailerSend"
    payload_class = MailerSendPayload
    required_settings = ("API_TOKEN",)
    optional_settings = ("BATCH_SEND_MODE", "API_URL")

    def __init__(self, **kwargs: Any) -> None:
        esp_name = self.esp_setting_prefix
        self.api_token = get_anymail_setting(
            "api_token", esp_name=esp_name, kwargs=kwargs, allow_bare=True
        )
        self.batch_send_mode = validated_batch_send_mode(
            get_anymail_setting("batch_send_mode", esp_name=esp_name, kwargs=kwargs, default=None),
            f"{esp_name}_BATCH_SEND_MODE",
        )
        api_url = get_anymail_setting(
            "api_url", esp_name=esp_name, kwargs=kwargs, default=DEFAULT_API_URL
        )
        if not api_url.endswith("/"):
            api_url += "/"
        super().__init__(api_url, **kwargs)

    def parse_recipient_status(
        self, response: requests.Response, payload: MailerSendPayload, message: EmailMessage
    ) -> dict[str, AnymailRecipientStatus]:
        if payload.use_bulk_email:
            return self.parse_bulk_email_status(response, payload, message)

        # Usually an empty body; JSON only when there are warnings.
        parsed = (
            self.deserialize_json_response(response, payload, message)
            if response.content.strip()
            else {}
        )
        warnings = parsed.get("warnings") if isinstance(parsed, dict) else None
        rejected = set()
        all_suppressed = False
        for warning in warnings or []:
            if warning.get("type") in SUPPRESSED_WARNINGS:
                all_suppressed = all_suppressed or warning["type"] == "ALL_SUPPRESSED"
                rejected.update(
                    str(recipient.get("email", "")).lower()
                    for recipient in warning.get("recipients") or []
                )

        # X-Send-Paused: true means MailerSend accepted and holds the message
        # while the account's sending is paused: still "queued".
        message_id = response.headers.get("X-Message-Id")
        if not message_id and not all_suppressed:
            raise AnymailRequestsAPIError(
                "No X-Message-Id header in the MailerSend API response",
                email_message=message,
                payload=payload,
                response=response,
                backend=self,
            )
        status = {}
        for address in payload.all_recipients:
            if all_suppressed or address.addr_spec.lower() in rejected:
                status[address.addr_spec] = AnymailRecipientStatus(None, "rejected")
            else:
                status[address.addr_spec] = AnymailRecipientStatus(message_id, "queued")
        return status

    def parse_bulk_email_status(
        self, response: requests.Response, payload: MailerSendPayload, message: EmailMessage
    ) -> dict[str, AnymailRecipientStatus]:
        parsed = self.deserialize_json_response(response, payload, message)
        bulk_email_id = parsed.get("bulk_email_id") if isinstance(parsed, dict) else None
        if not bulk_email_id:
            raise AnymailRequestsAPIError(
                "No bulk_email_id in the MailerSend API response",
                email_message=message,
                payload=payload,
                response=response,
                backend=self,
            )
        # The prefix tells a bulk id from a message id; the real message ids
        # (and any rejections) are known only once MailerSend has processed
        # the batch.
        message_id = f"bulk:{bulk_email_id}"
        return {
            address.addr_spec: AnymailRecipientStatus(message_id, "unknown")
            for address in payload.all_recipients
        }
