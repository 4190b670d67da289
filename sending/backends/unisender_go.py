"""Unisender Go backend, through the Web API's email/send method.

Sends with ``POST {UNISENDER_GO_API_URL}email/send.json`` and a JSON body
``{"message": {...}}`` (https://godocs.unisender.ru/web-api-ref#email-send),
authenticated by the ``X-API-KEY`` header. (The API also takes the key as an
``api_key`` body field; the header keeps it out of the recorded payload.)

Settings (in ``ANYMAIL``):

* ``UNISENDER_GO_API_KEY`` (required; also read as a bare
  ``UNISENDER_GO_API_KEY`` setting): a user or project API key.
* ``UNISENDER_GO_API_URL`` (required): the API base of the data center your
  account is registered in, e.g. ``"https://go1.unisender.ru/ru/transactional/api/v1/"``
  or ``"https://go2.unisender.ru/ru/transactional/api/v1/"``. There is no
  default: a key sent to the wrong data center is refused as unknown.

How the normalized message maps to email/send:

* Every address in ``recipients`` gets its own copy, whose To shows only that
  recipient (named by the ``to_name`` substitution). A message with several
  recipients therefore sends "To" (and "CC") headers listing them, as the API
  allows for to/cc; recipients in neither header are bcc. A batch send
  (merge_data/merge_metadata) sends no such headers, and gives each "to"
  recipient its ``substitutions`` and ``metadata``.
* ``metadata`` is ``global_metadata``, ``merge_global_data`` is
  ``global_substitutions``, ``tags`` is ``tags`` (at most 4, 50 characters
  each), ``track_clicks``/``track_opens`` are ``track_links``/``track_read``,
  ``send_at`` is ``options.send_at`` (UTC, at most 24 hours ahead).
* Unisender Go passes on only ``X-`` extra headers (and a few list headers
  its support enables); it takes a single reply-to address.
* ``esp_extra`` is merged (deeply) into ``message``, for options such as
  ``global_language``, ``template_engine``, ``skip_unsubscribe`` or the
  ``bypass_*`` flags.

The response gives one ``job_id`` for the whole call: it is the message id
of every accepted recipient (webhook events carry it with the recipient's
address). Recipients Unisender Go refused are listed in ``failed_emails``
with a reason: "invalid" becomes status invalid, the rest ("unsubscribed",
"complained", "permanent_unavailable", "temporary_unavailable", "blocked",
"duplicate") rejected. If it refuses every recipient, the call fails with
API error 204.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from django.core.mail.message import EmailMessage

from ..exceptions import AnymailRequestsAPIError
from ..message import AnymailRecipientStatus
from ..utils import Attachment, EmailAddress, get_anymail_setting, normalize_address, update_deep
from .base_requests import AnymailRequestsBackend, RequestsPayload


class EmailBackend(AnymailRequestsBackend):
    """Send email through Unisender Go's Web API."""

    esp_name = "Unisender Go"
    required_settings = ("API_KEY", "API_URL")

    def __init__(self, **kwargs: Any) -> None:
        esp_name = self.esp_setting_prefix
        self.api_key = get_anymail_setting(
            "api_key", esp_name=esp_name, kwargs=kwargs, allow_bare=True
        )
        api_url = get_anymail_setting("api_url", esp_name=esp_name, kwargs=kwargs)
        if not api_url.endswith("/"):
            api_url += "/"
        super().__init__(api_url, **kwargs)

    def parse_recipient_status(
        self, response: Any, payload: UnisenderGoPayload, message: EmailMessage
    ) -> dict[str, AnymailRecipientStatus]:
        # {"status": "success", "job_id": "1ZymBc-00041N-9X", "emails": ["user@example.com"],
        #  "failed_emails": {"bad@address": "invalid", "old@example.net": "unsubscribed"}}
        parsed = self.deserialize_json_response(response, payload, message)
        try:
            succeeded = parsed["status"] == "success"
            job_id = parsed.get("job_id") if succeeded else None
            accepted = {normalize_address(email) for email in parsed.get("emails") or []}
            failed = {
                normalize_address(email): reason
                for email, reason in (parsed.get("failed_emails") or {}).items()
            }
        except (KeyError, TypeError, AttributeError) as err:
            raise AnymailRequestsAPIError(
                "Invalid Unisender Go API response format",
                email_message=message,
                payload=payload,
                response=response,
                backend=self,
            ) from err
        if not succeeded:
            # Errors come with a 4xx/5xx status; this guards a 200 that isn't a success.
            raise AnymailRequestsAPIError(
                "Unisender Go API call did not succeed",
                email_message=message,
                payload=payload,
                response=response,
                backend=self,
            )

        statuses = {}
        for address in payload.all_recipients:
            key = normalize_address(address.addr_spec)
            if key in accepted:
                statuses[address.addr_spec] = AnymailRecipientStatus(job_id, "queued")
            elif key in failed:
                status = "invalid" if failed[key] == "invalid" else "rejected"
                statuses[address.addr_spec] = AnymailRecipientStatus(None, status)
            else:
                statuses[address.addr_spec] = AnymailRecipientStatus(job_id, "unknown")
        return statuses


class UnisenderGoPayload(RequestsPayload):
    """An email/send request."""

    feature_limits = {
        "tags": "up to 4 tags per message, 50 characters each",
        "reply_to": "one address",
        "extra_headers": "only X- headers are passed on",
        "send_at": "at most 24 hours ahead",
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
            "Content-Type": "application/json",
            "Accept": "application/json",
            "X-API-KEY": backend.api_key,
        }
        super().__init__(message, defaults, backend, suppressed, *args, headers=headers, **kwargs)

    def get_api_endpoint(self) -> str:
        return "email/send.json"

    def serialize_data(self) -> str:
        data = dict(self.message_data)
        data["recipients"] = self.build_recipients()
        headers = dict(self.email_headers)
        if self.shows_all_recipients():
            if self.to_emails:
                headers["To"] = ", ".join(email.address for email in self.to_emails)
            if self.cc_emails:
                headers["CC"] = ", ".join(email.address for email in self.cc_emails)
        if headers:
            data["headers"] = headers
        if self.body:
            data["body"] = self.body
        if self.options:
            data["options"] = self.options
        update_deep(data, self.esp_extra)
        return self.serialize_json({"message": data})

    def shows_all_recipients(self) -> bool:
        """Whether this send needs To/CC headers listing every to and cc address."""
        return not self.is_batch() and len(self.all_recipients) > 1

    def build_recipients(self) -> list[dict[str, Any]]:
        batch = self.is_batch()
        named_by_substitution = not self.shows_all_recipients()
        recipients = []
        by_kind = {"to": self.to_emails, "cc": self.cc_emails, "bcc": self.bcc_emails}
        for kind, emails in by_kind.items():
            for email in emails:
                recipient: dict[str, Any] = {"email": email.addr_spec}
                substitutions: dict[str, Any] = {}
                if named_by_substitution and email.display_name:
                    # Unisender Go's special substitution for the To header's display name
                    substitutions["to_name"] = email.display_name
                if batch and kind == "to":
                    substitutions.update(self.merge_data.get(email.addr_spec, {}))
                    if email.addr_spec in self.merge_metadata:
                        recipient["metadata"] = self.merge_metadata[email.addr_spec]
                if substitutions:
                    recipient["substitutions"] = substitutions
                recipients.append(recipient)
        return recipients

    # Setters

    def init_payload(self) -> None:
        self.message_data: dict[str, Any] = {}
        self.body: dict[str, str] = {}
        self.options: dict[str, Any] = {}
        self.email_headers: dict[str, str] = {}
        self.to_emails: list[EmailAddress] = []
        self.cc_emails: list[EmailAddress] = []
        self.bcc_emails: list[EmailAddress] = []
        self.merge_data: dict[str, Any] = {}
        self.merge_metadata: dict[str, Any] = {}
        self.esp_extra: dict[str, Any] = {}

    def set_from_email(self, email: EmailAddress) -> None:
        self.message_data["from_email"] = email.addr_spec
        if email.display_name:
            self.message_data["from_name"] = email.display_name

    def set_to(self, emails: list[EmailAddress]) -> None:
        self.to_emails = emails

    def set_cc(self, emails: list[EmailAddress]) -> None:
        self.cc_emails = emails

    def set_bcc(self, emails: list[EmailAddress]) -> None:
        self.bcc_emails = emails

    def set_subject(self, subject: str) -> None:
        # Left out when empty, so a stored template's subject applies (the API
        # refuses a blank subject anyway).
        if subject:
            self.message_data["subject"] = subject

    def set_reply_to(self, emails: list[EmailAddress]) -> None:
        if len(emails) > 1:
            self.unsupported_feature("multiple reply_to addresses")
        if emails:
            self.message_data["reply_to"] = emails[0].addr_spec
            if emails[0].display_name:
                self.message_data["reply_to_name"] = emails[0].display_name

    def set_extra_headers(self, headers: dict) -> None:
        for key, value in headers.items():
            self.email_headers[str(key)] = str(value)

    def set_text_body(self, body: str) -> None:
        if body:
            self.body["plaintext"] = body

    def set_html_body(self, body: str) -> None:
        if body:
            self.body["html"] = body

    def set_amp_body(self, body: str) -> None:
        if body:
            self.body["amp"] = body

    def add_attachment(self, attachment: Attachment) -> None:
        if attachment.inline and attachment.cid:
            # An inline attachment's name is its Content-ID (html: src="cid:<name>")
            self.message_data.setdefault("inline_attachments", []).append(
                {
                    "type": attachment.mimetype,
                    "name": attachment.cid,
                    "content": attachment.b64content,
                }
            )
        else:
            self.message_data.setdefault("attachments", []).append(
                {
                    "type": attachment.mimetype,
                    "name": attachment.name or "",
                    "content": attachment.b64content,
                }
            )

    def set_metadata(self, metadata: dict) -> None:
        if metadata:
            self.message_data["global_metadata"] = metadata

    def set_merge_metadata(self, merge_metadata: dict) -> None:
        self.merge_metadata = merge_metadata

    def set_send_at(self, send_at: Any) -> None:
        self.options["send_at"] = send_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")

    def set_tags(self, tags: list) -> None:
        if tags:
            self.message_data["tags"] = tags

    def set_track_clicks(self, track_clicks: bool) -> None:
        self.message_data["track_links"] = 1 if track_clicks else 0

    def set_track_opens(self, track_opens: bool) -> None:
        self.message_data["track_read"] = 1 if track_opens else 0

    def set_template_id(self, template_id: str) -> None:
        self.message_data["template_id"] = template_id

    def set_merge_data(self, merge_data: dict) -> None:
        self.merge_data = merge_data

    def set_merge_global_data(self, merge_global_data: dict) -> None:
        self.message_data["global_substitutions"] = merge_global_data

    def set_esp_extra(self, extra: dict) -> None:
        self.esp_extra = extra


EmailBackend.payload_class = UnisenderGoPayload
