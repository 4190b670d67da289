"""SparkPost backend, through the Transmissions API.

Sends with ``POST {SPARKPOST_API_URL}transmissions``
(https://developers.sparkpost.com/api/transmissions/), authenticated by the
raw API key in the ``Authorization`` header (no "Bearer" prefix).

Settings (in ``ANYMAIL``):

* ``SPARKPOST_API_KEY`` (required; also read as a bare ``SPARKPOST_API_KEY``
  setting): a key with the "Transmissions: Read/Write" permission.
* ``SPARKPOST_API_URL`` (default ``"https://api.sparkpost.com/api/v1/"``): use
  ``"https://api.eu.sparkpost.com/api/v1/"`` for a SparkPost EU account, or
  your SparkPost Enterprise endpoint. Give the full, versioned URL.
* ``SPARKPOST_SUBACCOUNT`` (optional): send as this subaccount id (the
  ``X-MSYS-SUBACCOUNT`` header), with a primary account's key.

How the normalized message maps to a transmission:

* SparkPost generates one message per recipient, and each shows only that
  recipient in To unless the recipient's ``header_to`` says otherwise. So a
  message with several recipients sets every recipient's ``header_to`` to the
  full To list and lists cc in a "CC" header, as SparkPost documents for cc
  and bcc. A batch send (merge_data/merge_metadata) leaves the "to"
  recipients' ``header_to`` unset, so each sees only their own address, and
  gives each its ``substitution_data`` and ``metadata``.
* ``tags`` is SparkPost's ``campaign_id``, which holds one value: a second tag
  is an unsupported feature (only the first is sent when ignored).
* ``template_id`` sends ``content: {"template_id": ...}``: the stored template
  supplies from, subject, reply-to, headers and bodies, and SparkPost refuses
  a transmission that also sets them, so they are unsupported alongside it
  (from_email is simply left out, since Django always has one).
* ``envelope_sender`` is ``return_path`` (SparkPost may keep only its domain).
* ``esp_extra`` is merged (deeply) into the transmission, so
  ``{"options": {"transactional": True}}`` or ``{"description": ...}`` work.

The response only counts accepted and rejected recipients under one
transmission id (mailhub's message id for every recipient). When SparkPost
rejects some but not all recipients it doesn't say which, so each recipient's
status is then "unknown".
"""

from __future__ import annotations

from typing import Any

from django.core.mail.message import EmailMessage

from ..exceptions import AnymailRequestsAPIError
from ..message import AnymailRecipientStatus
from ..utils import Attachment, EmailAddress, get_anymail_setting, update_deep
from .base_requests import AnymailRequestsBackend, RequestsPayload

DEFAULT_API_URL = "https://api.sparkpost.com/api/v1/"


class EmailBackend(AnymailRequestsBackend):
    """Send email through SparkPost's Transmissions API."""

    esp_name = "SparkPost"
    required_settings = ("API_KEY",)
    optional_settings = ("API_URL", "SUBACCOUNT")

    def __init__(self, **kwargs: Any) -> None:
        esp_name = self.esp_setting_prefix
        self.api_key = get_anymail_setting(
            "api_key", esp_name=esp_name, kwargs=kwargs, allow_bare=True
        )
        self.subaccount = get_anymail_setting(
            "subaccount", esp_name=esp_name, kwargs=kwargs, default=None
        )
        api_url = get_anymail_setting(
            "api_url", esp_name=esp_name, kwargs=kwargs, default=DEFAULT_API_URL
        )
        if not api_url.endswith("/"):
            api_url += "/"  # the documented EU URL is often written without it
        super().__init__(api_url, **kwargs)

    def parse_recipient_status(
        self, response: Any, payload: SparkPostPayload, message: EmailMessage
    ) -> dict[str, AnymailRecipientStatus]:
        # {"results": {"total_rejected_recipients": 0, "total_accepted_recipients": 2,
        #              "id": "11668787484950529"}}
        parsed = self.deserialize_json_response(response, payload, message)
        try:
            results = parsed["results"]
            accepted = results["total_accepted_recipients"]
            rejected = results["total_rejected_recipients"]
            transmission_id = results.get("id")
        except (KeyError, TypeError, AttributeError) as err:
            raise AnymailRequestsAPIError(
                "Invalid SparkPost API response format",
                email_message=message,
                payload=payload,
                response=response,
                backend=self,
            ) from err

        if not rejected:
            status = "queued"
        elif not accepted:
            status = "rejected"
        else:
            status = "unknown"  # some were rejected, and SparkPost doesn't say which
        return {
            address.addr_spec: AnymailRecipientStatus(transmission_id, status)
            for address in payload.all_recipients
        }


class SparkPostPayload(RequestsPayload):
    """A SparkPost transmission."""

    feature_limits = {
        "tags": "one tag per message (sent as campaign_id)",
        "template_id": "template supplies subject, bodies, reply-to, headers and attachments",
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
            "Authorization": backend.api_key,
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        if backend.subaccount is not None:
            headers["X-MSYS-SUBACCOUNT"] = str(backend.subaccount)
        super().__init__(message, defaults, backend, suppressed, *args, headers=headers, **kwargs)

    def get_api_endpoint(self) -> str:
        return "transmissions"

    def serialize_data(self) -> str:
        data = dict(self.data)
        data["recipients"] = self.build_recipients()
        data["content"] = self.build_content()
        if self.options:
            data["options"] = self.options
        update_deep(data, self.esp_extra)
        return self.serialize_json(data)

    def build_recipients(self) -> list[dict[str, Any]]:
        to_header = ", ".join(email.address for email in self.to_emails)
        batch = self.is_batch()
        # Without header_to, each copy's To shows only its own recipient.
        show_all = not batch and len(self.all_recipients) > 1

        recipients = []
        by_kind = {"to": self.to_emails, "cc": self.cc_emails, "bcc": self.bcc_emails}
        for kind, emails in by_kind.items():
            for email in emails:
                address: dict[str, str] = {"email": email.addr_spec}
                if email.display_name:
                    address["name"] = email.display_name
                if to_header and (kind != "to" or show_all):
                    address["header_to"] = to_header
                recipient: dict[str, Any] = {"address": address}
                if batch and kind == "to":
                    if email.addr_spec in self.merge_data:
                        recipient["substitution_data"] = self.merge_data[email.addr_spec]
                    if email.addr_spec in self.merge_metadata:
                        recipient["metadata"] = self.merge_metadata[email.addr_spec]
                recipients.append(recipient)
        return recipients

    def build_content(self) -> dict[str, Any]:
        if self.template_id is not None:
            # The stored template supplies from, subject, headers and bodies
            # (set_template_id refused the ones given with it).
            return {"template_id": self.template_id}
        content = dict(self.content)
        headers = dict(self.email_headers)
        if self.cc_emails:
            headers["CC"] = ", ".join(email.address for email in self.cc_emails)
        if headers:
            content["headers"] = headers
        return content

    # Setters

    def init_payload(self) -> None:
        self.data: dict[str, Any] = {}
        self.content: dict[str, Any] = {}
        self.options: dict[str, Any] = {}
        self.email_headers: dict[str, str] = {}
        self.to_emails: list[EmailAddress] = []
        self.cc_emails: list[EmailAddress] = []
        self.bcc_emails: list[EmailAddress] = []
        self.merge_data: dict[str, Any] = {}
        self.merge_metadata: dict[str, Any] = {}
        self.template_id: str | None = None
        self.esp_extra: dict[str, Any] = {}

    def set_from_email(self, email: EmailAddress) -> None:
        from_email = {"email": email.addr_spec}
        if email.display_name:
            from_email["name"] = email.display_name
        self.content["from"] = from_email

    def set_to(self, emails: list[EmailAddress]) -> None:
        self.to_emails = emails

    def set_cc(self, emails: list[EmailAddress]) -> None:
        self.cc_emails = emails

    def set_bcc(self, emails: list[EmailAddress]) -> None:
        self.bcc_emails = emails

    def set_subject(self, subject: str) -> None:
        self.content["subject"] = subject

    def set_reply_to(self, emails: list[EmailAddress]) -> None:
        if emails:
            self.content["reply_to"] = ", ".join(email.address for email in emails)

    def set_extra_headers(self, headers: dict) -> None:
        for key, value in headers.items():
            self.email_headers[str(key)] = str(value)

    def set_text_body(self, body: str) -> None:
        if body:
            self.content["text"] = body

    def set_html_body(self, body: str) -> None:
        if body:
            self.content["html"] = body

    def set_amp_body(self, body: str) -> None:
        if body:
            self.content["amp_html"] = body

    def add_attachment(self, attachment: Attachment) -> None:
        if attachment.inline and attachment.cid:
            # SparkPost names an inline image by its Content-ID (html: src="cid:<name>")
            self.content.setdefault("inline_images", []).append(
                {"name": attachment.cid, "type": attachment.mimetype, "data": attachment.b64content}
            )
        else:
            self.content.setdefault("attachments", []).append(
                {
                    "name": attachment.name or "",
                    "type": attachment.mimetype,
                    "data": attachment.b64content,
                }
            )

    def set_envelope_sender(self, email: EmailAddress) -> None:
        self.data["return_path"] = email.addr_spec

    def set_metadata(self, metadata: dict) -> None:
        if metadata:
            self.data["metadata"] = metadata

    def set_merge_metadata(self, merge_metadata: dict) -> None:
        self.merge_metadata = merge_metadata

    def set_send_at(self, send_at: Any) -> None:
        # ISO 8601 with a numeric offset, no fractional seconds: "2025-05-01T12:00:00+00:00"
        self.options["start_time"] = send_at.replace(microsecond=0).isoformat()

    def set_tags(self, tags: list) -> None:
        if len(tags) > 1:
            self.unsupported_feature("multiple tags (SparkPost has one campaign_id per message)")
        if tags:
            self.data["campaign_id"] = tags[0]

    def set_track_clicks(self, track_clicks: bool) -> None:
        self.options["click_tracking"] = bool(track_clicks)

    def set_track_opens(self, track_opens: bool) -> None:
        self.options["open_tracking"] = bool(track_opens)

    def set_template_id(self, template_id: str) -> None:
        # SparkPost rejects a transmission whose content has a template_id
        # and other fields. The message's own content attributes are all set
        # by now (they come first in the attribute table).
        if self.email_headers:
            self.unsupported_feature("extra_headers with template_id")
        for field in ("subject", "text", "html", "amp_html", "reply_to"):
            if self.content.get(field):
                self.unsupported_feature(f"{field} with template_id")
        if "attachments" in self.content or "inline_images" in self.content:
            self.unsupported_feature("attachments with template_id")
        self.template_id = template_id

    def set_merge_data(self, merge_data: dict) -> None:
        self.merge_data = merge_data

    def set_merge_global_data(self, merge_global_data: dict) -> None:
        self.data["substitution_data"] = merge_global_data

    def set_esp_extra(self, extra: dict) -> None:
        self.esp_extra = extra


EmailBackend.payload_class = SparkPostPayload
