"""Mandrill (Mailchimp Transactional): the messages/send and messages/send-template API.

One POST per message to ``<api url>messages/send`` (or ``messages/send-template``
when the message has a template_id) with a JSON body:
``{"key": ..., "message": {...}, "send_at": ..., "template_name": ...}``.

Mandrill takes the API key in the JSON body, not in a header, so the body
is a credential. The payload keeps the key out of ``payload.data`` (which
exceptions carry) and adds it only when serializing; DEBUG_API_REQUESTS
prints the body with the key replaced, and error texts quote only
Mandrill's response, which never contains the key.

Mandrill reports every error as HTTP 500 with a JSON body such as
``{"status": "error", "code": -1, "name": "Invalid_Key", "message": "Invalid API key"}``;
the error text mailhub raises and records quotes it.

esp_extra: keys go at the top level of the request (``ip_pool``, ``async``,
``template_content``); a ``"message"`` dict merges into the message
(``subaccount``, ``merge_language``, ``important``, ...). As in the documented
API, ``message.recipient_metadata`` and ``template_content`` may be given as
plain dicts ({rcpt: values} and {name: content}).

Reference: https://mailchimp.com/developer/transactional/api/messages/send-new-message/
and .../messages/send-using-message-template/ (Mailchimp Transactional API 1.0).
"""

from __future__ import annotations

import copy
import json
from datetime import UTC
from typing import Any

import requests
from django.core.mail.message import EmailMessage

from ..exceptions import AnymailRequestsAPIError
from ..message import AnymailRecipientStatus
from ..utils import REDACTED, Attachment, EmailAddress, get_anymail_setting, update_deep
from .base_requests import AnymailRequestsBackend, RequestsPayload

DEFAULT_API_URL = "https://mandrillapp.com/api/1.0/"

# Mandrill's per-recipient "status" -> mailhub's send status. A scheduled
# message (send_at) is accepted and waiting, which is what "queued" means.
STATUS_MAP = {
    "sent": "sent",
    "queued": "queued",
    "scheduled": "queued",
    "rejected": "rejected",
    "invalid": "invalid",
}


class MandrillPayload(RequestsPayload):
    """Builds a Mandrill messages/send (or send-template) request."""

    feature_limits = {
        "envelope_sender": "domain only (Mandrill's return_path_domain)",
        "inline_images": "images only (Mandrill's message.images)",
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
        super().__init__(
            message,
            defaults,
            backend,
            suppressed,
            *args,
            headers={"Content-Type": "application/json"},
            **kwargs,
        )

    def get_api_endpoint(self) -> str:
        if "template_name" in self.data:
            return "messages/send-template"
        return "messages/send"

    def init_payload(self) -> None:
        # Everything but the API key, which serialize_data adds.
        self.data: dict[str, Any] = {"message": {}}
        self.merge_metadata: dict | None = None
        self.esp_extra: dict = {}

    def serialize_data(self) -> str:
        data = copy.deepcopy(self.data)
        message = data["message"]
        if self.is_batch():
            # One copy per recipient, each showing only its own address.
            message["preserve_recipients"] = False
        if self.merge_metadata:
            message["recipient_metadata"] = self.rcpt_list(self.merge_metadata, "values")

        extra = copy.deepcopy(self.esp_extra)
        extra_message = extra.pop("message", None) or {}
        if isinstance(extra_message.get("recipient_metadata"), dict):
            extra_message["recipient_metadata"] = self.rcpt_list(
                extra_message["recipient_metadata"], "values"
            )
        if isinstance(extra.get("template_content"), dict):
            extra["template_content"] = self.name_content_list(extra["template_content"])
        update_deep(message, extra_message)
        update_deep(data, extra)
        return self.serialize_json({"key": self.backend.api_key, **data})

    @staticmethod
    def rcpt_list(per_recipient: dict, field: str) -> list[dict[str, Any]]:
        """{rcpt: value} -> Mandrill's [{"rcpt": rcpt, field: value}]."""
        return [{"rcpt": rcpt, field: value} for rcpt, value in per_recipient.items()]

    @staticmethod
    def name_content_list(values: dict) -> list[dict[str, Any]]:
        """{name: content} -> Mandrill's [{"name": name, "content": content}]."""
        return [{"name": name, "content": content} for name, content in values.items()]

    # Setters

    def set_from_email(self, email: EmailAddress) -> None:
        self.data["message"]["from_email"] = email.addr_spec
        if email.display_name:
            self.data["message"]["from_name"] = email.display_name

    def add_recipient(self, recipient_type: str, email: EmailAddress) -> None:
        recipient = {"email": email.addr_spec, "type": recipient_type}
        if email.display_name:
            recipient["name"] = email.display_name
        self.data["message"].setdefault("to", []).append(recipient)

    def set_subject(self, subject: str) -> None:
        self.data["message"]["subject"] = subject

    def set_reply_to(self, emails: list[EmailAddress]) -> None:
        # Mandrill has no reply_to field; it takes Reply-To as a header.
        if emails:
            headers = self.data["message"].setdefault("headers", {})
            headers["Reply-To"] = ", ".join(email.address for email in emails)

    def set_extra_headers(self, headers: dict) -> None:
        if headers:
            self.data["message"].setdefault("headers", {}).update(headers)

    def set_text_body(self, body: str) -> None:
        # Django's default body is "": don't send an empty text part (e.g. with a template).
        if body:
            self.data["message"]["text"] = body

    def set_html_body(self, body: str) -> None:
        self.data["message"]["html"] = body

    def add_attachment(self, attachment: Attachment) -> None:
        if attachment.inline and attachment.mimetype.startswith("image/"):
            # Mandrill embeds images by Content-ID: an image's "name" is its cid.
            field = "images"
            name = attachment.cid
        else:
            if attachment.inline:
                # message.images must be image/*; anything else can only be attached.
                self.unsupported_feature(f"inline attachments of type '{attachment.mimetype}'")
            field = "attachments"
            name = attachment.name or ""
        self.data["message"].setdefault(field, []).append(
            {"type": attachment.mimetype, "name": name, "content": attachment.b64content}
        )

    def set_envelope_sender(self, email: EmailAddress) -> None:
        # Mandrill always generates the bounce mailbox itself; only its domain can be chosen.
        self.data["message"]["return_path_domain"] = email.domain

    def set_metadata(self, metadata: dict) -> None:
        self.data["message"]["metadata"] = metadata

    def set_merge_metadata(self, merge_metadata: dict) -> None:
        self.merge_metadata = merge_metadata

    def set_send_at(self, send_at: Any) -> None:
        # "a UTC timestamp in YYYY-MM-DD HH:MM:SS format"
        self.data["send_at"] = send_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")

    def set_tags(self, tags: list) -> None:
        self.data["message"]["tags"] = tags

    def set_track_clicks(self, track_clicks: bool) -> None:
        self.data["message"]["track_clicks"] = track_clicks

    def set_track_opens(self, track_opens: bool) -> None:
        self.data["message"]["track_opens"] = track_opens

    def set_template_id(self, template_id: str) -> None:
        self.data["template_name"] = template_id
        # send-template requires template_content, even when it has no editable regions.
        self.data.setdefault("template_content", [])

    def set_merge_data(self, merge_data: dict) -> None:
        self.data["message"]["merge_vars"] = [
            {"rcpt": rcpt, "vars": self.name_content_list(values)}
            for rcpt, values in merge_data.items()
        ]

    def set_merge_global_data(self, merge_global_data: dict) -> None:
        self.data["message"]["global_merge_vars"] = self.name_content_list(merge_global_data)

    def set_esp_extra(self, extra: dict) -> None:
        self.esp_extra = extra


class EmailBackend(AnymailRequestsBackend):
    """Send through Mandrill (Mailchimp Transactional)."""

    esp_name = "Mandrill"
    payload_class = MandrillPayload
    required_settings = ("API_KEY",)
    optional_settings = ("API_URL",)

    def __init__(self, **kwargs: Any) -> None:
        prefix = self.esp_setting_prefix
        self.api_key = get_anymail_setting(
            "api_key", esp_name=prefix, kwargs=kwargs, allow_bare=True
        )
        api_url = get_anymail_setting(
            "api_url", esp_name=prefix, kwargs=kwargs, default=DEFAULT_API_URL
        )
        if not api_url.endswith("/"):
            api_url += "/"
        super().__init__(api_url, **kwargs)

    def _dump_api_request(self, response: requests.Response) -> None:
        shown = copy.copy(response)
        shown.request = response.request.copy()
        shown.request.body = redacted_body(response.request.body)
        super()._dump_api_request(shown)

    def parse_recipient_status(
        self, response: requests.Response, payload: MandrillPayload, message: EmailMessage
    ) -> dict[str, AnymailRecipientStatus]:
        # [{"email": "to@example.com", "status": "sent", "_id": "abc123...", "reject_reason": null}]
        results = self.deserialize_json_response(response, payload, message)
        try:
            by_email = {
                result["email"].lower(): AnymailRecipientStatus(
                    message_id=result.get("_id"),
                    status=STATUS_MAP.get(result.get("status"), "unknown"),
                )
                for result in results
            }
        except (AttributeError, KeyError, TypeError) as err:
            raise AnymailRequestsAPIError(
                "Invalid Mandrill API response format",
                email_message=message,
                payload=payload,
                response=response,
                backend=self,
            ) from err
        unknown = AnymailRecipientStatus(message_id=None, status="unknown")
        return {
            address.addr_spec: by_email.get(address.addr_spec.lower(), unknown)
            for address in payload.all_recipients
        }


def redacted_body(body: str | bytes | None) -> str | bytes | None:
    """A Mandrill request body with the API key replaced, fit to print."""
    if not body:
        return body
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if isinstance(data, dict) and "key" in data:
        data["key"] = REDACTED
    return json.dumps(data)
