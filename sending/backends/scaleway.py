"""Scaleway Transactional Email (TEM) backend.

Sends with the TEM REST API's "Send an email" call (API version v1alpha1):
``POST https://api.scaleway.com/transactional-email/v1alpha1/regions/{region}/emails``
(https://www.scaleway.com/en/developers/api/transactional-email/#path-emails-send-an-email),
authenticated by an IAM API *secret* key in the ``X-Auth-Token`` header.

Settings (in ``ANYMAIL``):

* ``SCALEWAY_SECRET_KEY`` (required; also read as a bare ``SCALEWAY_SECRET_KEY``
  setting): the secret half of an API key allowed TransactionalEmailEmailApiCreate.
* ``SCALEWAY_PROJECT_ID`` (required): the Project the sending domain belongs to.
* ``SCALEWAY_REGION`` (default ``"fr-par"``): where TEM is provisioned ("nl-ams", ...).
* ``SCALEWAY_API_URL`` (default below): the API base; ``{region}`` is replaced
  by SCALEWAY_REGION.

TEM is a plain transactional API: it has no batch sending or stored
templates, no tags or metadata, no tracking options, no envelope sender and
no scheduled sending. (Its ``send_before`` is a delivery *deadline*, not a
start time; pass it in ``esp_extra`` if you need it.) It accepts no inline
images either: every attachment is sent as a regular one.
"""

from __future__ import annotations

from typing import Any

from django.core.mail.message import EmailMessage

from ..exceptions import AnymailRequestsAPIError
from ..message import AnymailRecipientStatus
from ..utils import Attachment, EmailAddress, get_anymail_setting, normalize_address, update_deep
from .base_requests import AnymailRequestsBackend, RequestsPayload

DEFAULT_API_URL = "https://api.scaleway.com/transactional-email/v1alpha1/regions/{region}/"
DEFAULT_REGION = "fr-par"

# TEM's Email.status -> mailhub's send status. "new" and "sending" are what a
# fresh send answers; the others appear only if the email was already handled.
EMAIL_STATUSES = {
    "new": "queued",
    "sending": "queued",
    "sent": "sent",
    "failed": "failed",
    "canceled": "failed",
}


class EmailBackend(AnymailRequestsBackend):
    """Send email through Scaleway Transactional Email."""

    esp_name = "Scaleway"
    required_settings = ("SECRET_KEY", "PROJECT_ID")
    optional_settings = ("REGION", "API_URL")

    def __init__(self, **kwargs: Any) -> None:
        esp_name = self.esp_setting_prefix
        self.secret_key = get_anymail_setting(
            "secret_key", esp_name=esp_name, kwargs=kwargs, allow_bare=True
        )
        self.project_id = get_anymail_setting("project_id", esp_name=esp_name, kwargs=kwargs)
        self.region = get_anymail_setting(
            "region", esp_name=esp_name, kwargs=kwargs, default=DEFAULT_REGION
        )
        api_url = get_anymail_setting(
            "api_url", esp_name=esp_name, kwargs=kwargs, default=DEFAULT_API_URL
        )
        api_url = api_url.format(region=self.region)
        if not api_url.endswith("/"):
            api_url += "/"
        super().__init__(api_url, **kwargs)

    def parse_recipient_status(
        self, response: Any, payload: ScalewayPayload, message: EmailMessage
    ) -> dict[str, AnymailRecipientStatus]:
        # TEM creates one Email resource per recipient:
        # {"emails": [{"id": ..., "message_id": ..., "mail_rcpt": ..., "status": "new", ...}]}.
        # Its "id" is what the API (get, cancel) and webhook events ("email_id")
        # know the email by, so it is the recipient's message id here.
        parsed = self.deserialize_json_response(response, payload, message)
        try:
            emails = {
                normalize_address(email.get("mail_rcpt") or email["rcpt_to"]): email
                for email in parsed["emails"]
            }
        except (KeyError, TypeError, AttributeError) as err:
            raise AnymailRequestsAPIError(
                "Invalid Scaleway API response format",
                email_message=message,
                payload=payload,
                response=response,
                backend=self,
            ) from err

        statuses = {}
        for address in payload.all_recipients:
            email = emails.get(normalize_address(address.addr_spec))
            if email is None:
                statuses[address.addr_spec] = AnymailRecipientStatus(None, "unknown")
            else:
                status = EMAIL_STATUSES.get(email.get("status"), "unknown")
                statuses[address.addr_spec] = AnymailRecipientStatus(email.get("id"), status)
        return statuses


class ScalewayPayload(RequestsPayload):
    """A TEM "Send an email" request body."""

    feature_limits = {"attachments": "no inline images (sent as regular attachments)"}

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
            "Content-Type": "application/json",
            "Accept": "application/json",
            "X-Auth-Token": backend.secret_key,
        }
        super().__init__(message, defaults, backend, suppressed, *args, headers=headers, **kwargs)

    def get_api_endpoint(self) -> str:
        return "emails"

    def serialize_data(self) -> str:
        data = dict(self.data)
        if self.email_headers:
            data["additional_headers"] = [
                {"key": key, "value": value} for key, value in self.email_headers.items()
            ]
        update_deep(data, self.esp_extra)
        return self.serialize_json(data)

    # Setters

    def init_payload(self) -> None:
        self.data: dict[str, Any] = {"project_id": self.backend.project_id}
        # Headers of the email (not of the API request): TEM takes them as a
        # list of {"key", "value"}, built when serializing.
        self.email_headers: dict[str, str] = {}
        self.esp_extra: dict[str, Any] = {}

    def address_object(self, email: EmailAddress) -> dict[str, str]:
        # Scaleway mishandles non-ASCII local parts (EAI): the message is lost
        # or bounces inside TEM, so refuse them rather than lose mail silently.
        if not email.username.isascii():
            self.unsupported_feature(f"non-ASCII mailbox (EAI) '{email.addr_spec}'")
        obj = {"email": email.addr_spec}
        if email.display_name:
            obj["name"] = email.display_name
        return obj

    def set_from_email(self, email: EmailAddress) -> None:
        self.data["from"] = self.address_object(email)

    def add_recipient(self, recipient_type: str, email: EmailAddress) -> None:
        self.data.setdefault(recipient_type, []).append(self.address_object(email))

    def set_subject(self, subject: str) -> None:
        self.data["subject"] = subject

    def set_reply_to(self, emails: list[EmailAddress]) -> None:
        # No reply_to field: TEM documents additional_headers for it.
        if emails:
            self.email_headers["Reply-To"] = ", ".join(email.address for email in emails)

    def set_extra_headers(self, headers: dict) -> None:
        for key, value in headers.items():
            self.email_headers[str(key)] = str(value)

    def set_text_body(self, body: str) -> None:
        if body:
            self.data["text"] = body

    def set_html_body(self, body: str) -> None:
        if body:
            self.data["html"] = body

    def add_attachment(self, attachment: Attachment) -> None:
        if attachment.inline:
            # With IGNORE_UNSUPPORTED_FEATURES, the image still goes, as a plain attachment.
            self.unsupported_feature("inline attachments")
        self.data.setdefault("attachments", []).append(
            {
                "name": attachment.name or "",
                "type": attachment.mimetype,
                "content": attachment.b64content,
            }
        )

    def set_esp_extra(self, extra: dict) -> None:
        self.esp_extra = extra


EmailBackend.payload_class = ScalewayPayload
