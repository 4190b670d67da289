"""Brevo (formerly Sendinblue): send through Brevo's transactional email API v3.

One endpoint, ``POST /v3/smtp/email``, JSON in and out, authenticated by the
``api-key`` header. A plain send answers ``201 {"messageId": "<...>"}``. A
batch send (merge_data) becomes one ``messageVersions`` entry per "to"
recipient, and Brevo answers ``201 {"messageIds": [...]}``, one id per
version, in order.

Reference: https://developers.brevo.com/reference/send-transac-email,
https://developers.brevo.com/docs/batch-send-transactional-emails and
https://developers.brevo.com/docs/transactional-webhooks (X-Mailin-custom).
"""

from __future__ import annotations

import mimetypes
from datetime import UTC, datetime
from typing import Any

import requests
from django.core.mail.message import EmailMessage

from ..exceptions import AnymailRequestsAPIError
from ..message import AnymailRecipientStatus
from ..utils import Attachment, EmailAddress, get_anymail_setting, update_deep
from .base_requests import AnymailRequestsBackend, RequestsPayload

DEFAULT_API_URL = "https://api.brevo.com/v3/"

# Brevo returns metadata to tracking webhooks in the "X-Mailin-custom" field
# of every transactional event, as the string it was sent with.
METADATA_HEADER = "X-Mailin-custom"


class BrevoPayload(RequestsPayload):
    """A message as the JSON body of Brevo's ``smtp/email`` call."""

    feature_limits = {
        "reply_to": "one address",
        "attachments": "no inline images; Brevo takes the type from the filename extension",
        "merge_data": "up to 1000 message versions (2000 recipients) per send",
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
        headers = {
            "api-key": backend.api_key,
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
        super().__init__(message, defaults, backend, suppressed, *args, headers=headers, **kwargs)

    def get_api_endpoint(self) -> str:
        return "smtp/email"

    def init_payload(self) -> None:
        self.data: dict[str, Any] = {}
        self.extra_headers: dict[str, str] = {}
        self.metadata: dict | None = None
        self.merge_data: dict[str, dict] = {}
        self.merge_global_data: dict[str, Any] = {}
        self.esp_extra: dict[str, Any] = {}

    def serialize_data(self) -> str:
        data = dict(self.data)
        headers = dict(self.extra_headers)
        if self.metadata is not None:
            headers[METADATA_HEADER] = self.serialize_json(self.metadata)
        if headers:
            data["headers"] = headers

        if self.is_batch():
            # Each "to" gets its own version (and so its own message id); cc
            # and bcc stay global, so they get a copy of every version. A
            # version's params are complete on their own: with a single
            # version, Brevo uses its params instead of the global ones.
            to = data.pop("to", [])
            versions = []
            for recipient in to:
                version: dict[str, Any] = {"to": [recipient]}
                params = {**self.merge_global_data, **self.merge_data.get(recipient["email"], {})}
                if params:
                    version["params"] = params
                versions.append(version)
            data["messageVersions"] = versions
        elif self.merge_global_data:
            data["params"] = self.merge_global_data

        update_deep(data, self.esp_extra)
        return self.serialize_json(data)

    # Setters

    @staticmethod
    def email_object(email: EmailAddress) -> dict[str, str]:
        obj = {"email": email.addr_spec}
        if email.display_name:
            obj["name"] = email.display_name
        return obj

    def set_from_email(self, email: EmailAddress) -> None:
        self.data["sender"] = self.email_object(email)

    def set_recipients(self, recipient_type: str, emails: list[EmailAddress]) -> None:
        if emails:
            self.data[recipient_type] = [self.email_object(email) for email in emails]

    def set_subject(self, subject: str) -> None:
        if subject:  # an empty subject would override a template's
            self.data["subject"] = subject

    def set_reply_to(self, emails: list[EmailAddress]) -> None:
        if len(emails) > 1:
            self.unsupported_feature("multiple reply_to addresses")
        if emails:
            self.data["replyTo"] = self.email_object(emails[0])

    def set_extra_headers(self, headers: dict) -> None:
        # Brevo rewrites header names to Title-Case and refuses standard
        # headers; both are its call to make.
        self.extra_headers.update({name: str(value) for name, value in headers.items()})

    def set_text_body(self, body: str) -> None:
        # Brevo accepts a text-only message, but sends it as HTML.
        if body:
            self.data["textContent"] = body

    def set_html_body(self, body: str) -> None:
        self.data["htmlContent"] = body

    def add_attachment(self, attachment: Attachment) -> None:
        # The attachment object is only {content, name} (or {url, name}):
        # there is no Content-ID, so an inline image can't be referenced.
        if attachment.inline:
            self.unsupported_feature("inline attachments")
        self.data.setdefault("attachment", []).append(
            {"content": attachment.b64content, "name": self.attachment_name(attachment)}
        )

    @staticmethod
    def attachment_name(attachment: Attachment) -> str:
        # Brevo requires a name and derives the content type from its
        # extension, so give a nameless attachment one matching its type.
        if attachment.name:
            return attachment.name
        extension = mimetypes.guess_extension(attachment.mimetype) or ""
        return f"attachment{extension}"

    def set_metadata(self, metadata: dict) -> None:
        if metadata:
            self.metadata = metadata

    def set_send_at(self, send_at: datetime) -> None:
        # "UTC date-time (YYYY-MM-DDTHH:mm:ss.SSSZ)"; Brevo schedules up to
        # 72 hours ahead.
        utc = send_at.astimezone(UTC).isoformat(timespec="milliseconds")
        self.data["scheduledAt"] = utc.replace("+00:00", "Z")

    def set_tags(self, tags: list) -> None:
        if tags:
            self.data["tags"] = [str(tag) for tag in tags]

    def set_template_id(self, template_id: Any) -> None:
        # Brevo template ids are integers; a template overrides the bodies,
        # and its sender and subject apply unless the message sets them.
        try:
            self.data["templateId"] = int(template_id)
        except (TypeError, ValueError):
            self.data["templateId"] = template_id

    def set_merge_data(self, merge_data: dict) -> None:
        self.merge_data = merge_data

    def set_merge_global_data(self, merge_global_data: dict) -> None:
        self.merge_global_data = merge_global_data

    def set_esp_extra(self, extra: dict) -> None:
        self.esp_extra = extra


class EmailBackend(AnymailRequestsBackend):
    """Send email through Brevo's transactional email API."""

    esp_name = "Brevo"
    payload_class = BrevoPayload
    required_settings = ("API_KEY",)
    optional_settings = ("API_URL",)

    def __init__(self, **kwargs: Any) -> None:
        esp_name = self.esp_setting_prefix
        self.api_key = get_anymail_setting(
            "api_key", esp_name=esp_name, kwargs=kwargs, allow_bare=True
        )
        api_url = get_anymail_setting(
            "api_url", esp_name=esp_name, kwargs=kwargs, default=DEFAULT_API_URL
        )
        if not api_url.endswith("/"):
            api_url += "/"
        super().__init__(api_url, **kwargs)

    def parse_recipient_status(
        self, response: requests.Response, payload: BrevoPayload, message: EmailMessage
    ) -> dict[str, AnymailRecipientStatus]:
        # Brevo has accepted the message: whether it is delivered, blocked
        # or bounced comes later, in tracking events.
        parsed = self.deserialize_json_response(response, payload, message)
        if not isinstance(parsed, dict):
            parsed = {}

        if payload.is_batch():
            message_ids = parsed.get("messageIds")
            to = payload.recipients_by_kind["to"]
            if not isinstance(message_ids, list) or len(message_ids) != len(to):
                raise AnymailRequestsAPIError(
                    f"Expected {len(to)} messageIds in the Brevo API response",
                    email_message=message,
                    payload=payload,
                    response=response,
                    backend=self,
                )
            status = {
                address.addr_spec: AnymailRecipientStatus(message_id, "queued")
                for address, message_id in zip(to, message_ids, strict=True)
            }
            # cc and bcc get a copy of every version: no single id is theirs.
            for address in payload.recipients_by_kind["cc"] + payload.recipients_by_kind["bcc"]:
                status.setdefault(address.addr_spec, AnymailRecipientStatus(None, "queued"))
            return status

        message_id = parsed.get("messageId")
        if not message_id:
            raise AnymailRequestsAPIError(
                "No messageId in the Brevo API response",
                email_message=message,
                payload=payload,
                response=response,
                backend=self,
            )
        return {
            address.addr_spec: AnymailRecipientStatus(message_id, "queued")
            for address in payload.all_recipients
        }
