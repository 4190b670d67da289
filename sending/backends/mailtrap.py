"""Mailtrap: the Email API (transactional or bulk stream) and the Email Sandbox.

A normal send is one POST to ``<api url>send`` with the message as JSON; a
batch send (merge_data, merge_metadata or merge_headers) is one POST to
``<api url>batch`` with the shared fields in ``"base"`` and one entry per
"to" recipient in ``"requests"``. With MAILTRAP_SANDBOX_ID set, both go to
the sandbox host with the sandbox id appended (``send/<id>``), so test mail
lands in that sandbox inbox and is never delivered.

Which host (the API URL is always overridable with MAILTRAP_API_URL):

* MAILTRAP_SANDBOX_ID set: https://sandbox.api.mailtrap.io/api/
* MAILTRAP_BULK = True (promotional mail): https://bulk.api.mailtrap.io/api/
* otherwise (transactional stream): https://send.api.mailtrap.io/api/

Mailtrap answers a batch with HTTP 200 even when some of its messages were
refused. mailhub raises AnymailAPIError only when none was accepted; the
recipients of a refused entry otherwise get status "failed".

Reference: https://docs.mailtrap.io/ (Email API, Sandbox) and the OpenAPI
specs at https://github.com/mailtrap/mailtrap-openapi
"""

from __future__ import annotations

import copy
from typing import Any

import requests
from django.core.mail.message import EmailMessage

from ..exceptions import AnymailConfigurationError, AnymailRequestsAPIError
from ..message import AnymailRecipientStatus
from ..utils import Attachment, EmailAddress, get_anymail_setting, update_deep
from .base_requests import AnymailRequestsBackend, RequestsPayload

TRANSACTIONAL_API_URL = "https://send.api.mailtrap.io/api/"
BULK_API_URL = "https://bulk.api.mailtrap.io/api/"
SANDBOX_API_URL = "https://sandbox.api.mailtrap.io/api/"


class MailtrapPayload(RequestsPayload):
    """Builds a Mailtrap send or batch request."""

    feature_limits = {
        "tags": "one tag per message (sent as Mailtrap's category)",
        "reply_to": "one address",
        "merge_data": "with a template_id (template_variables) only",
        "merge_global_data": "with a template_id (template_variables) only",
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
            headers={
                "Authorization": f"Bearer {backend.api_token}",
                "Content-Type": "application/json",
            },
            **kwargs,
        )

    def get_api_endpoint(self) -> str:
        endpoint = "batch" if self.is_batch() else "send"
        if self.backend.sandbox_id:
            endpoint += f"/{self.backend.sandbox_id}"
        return endpoint

    def init_payload(self) -> None:
        self.data: dict[str, Any] = {}  # fields shared by every recipient
        self.to: list[EmailAddress] = []
        self.cc: list[EmailAddress] = []
        self.bcc: list[EmailAddress] = []
        self.metadata: dict | None = None
        self.merge_metadata: dict = {}
        self.merge_headers: dict = {}
        self.merge_data: dict = {}
        self.merge_global_data: dict | None = None
        self.esp_extra: dict = {}
        #: For a batch: each request's recipients, in Mailtrap's message_ids order.
        self.batch_recipients: list[list[EmailAddress]] = []

    def serialize_data(self) -> str:
        shared = copy.deepcopy(self.data)
        if self.metadata is not None:
            shared["custom_variables"] = self.metadata
        if self.merge_global_data is not None:
            shared["template_variables"] = self.merge_global_data
        update_deep(shared, copy.deepcopy(self.esp_extra))

        if not self.is_batch():
            return self.serialize_json({**shared, **self.recipient_fields(self.to)})

        # Batch "requests" inherit from "base" and override whole fields, so a
        # request with per-recipient data carries the merged field.
        requests_ = []
        self.batch_recipients = []
        for to in [[address] for address in self.to] or [[]]:
            request = self.recipient_fields(to)
            addr_spec = to[0].addr_spec if to else None
            if addr_spec in self.merge_metadata:
                request["custom_variables"] = {
                    **shared.get("custom_variables", {}),
                    **self.merge_metadata[addr_spec],
                }
            if addr_spec in self.merge_data:
                request["template_variables"] = {
                    **shared.get("template_variables", {}),
                    **self.merge_data[addr_spec],
                }
            if addr_spec in self.merge_headers:
                request["headers"] = {**shared.get("headers", {}), **self.merge_headers[addr_spec]}
            requests_.append(request)
            self.batch_recipients.append(to + self.cc + self.bcc)
        return self.serialize_json({"base": shared, "requests": requests_})

    def recipient_fields(self, to: list[EmailAddress]) -> dict[str, list[dict[str, str]]]:
        # Mailtrap takes cc and bcc per message only (not in a batch's "base"),
        # so in a batch every message carries them.
        fields = {"to": to, "cc": self.cc, "bcc": self.bcc}
        return {
            field: [self.mailtrap_address(address) for address in addresses]
            for field, addresses in fields.items()
            if addresses
        }

    @staticmethod
    def mailtrap_address(address: EmailAddress) -> dict[str, str]:
        if address.display_name:
            return {"email": address.addr_spec, "name": address.display_name}
        return {"email": address.addr_spec}

    # Setters

    def set_from_email(self, email: EmailAddress) -> None:
        self.data["from"] = self.mailtrap_address(email)

    def set_recipients(self, recipient_type: str, emails: list[EmailAddress]) -> None:
        setattr(self, recipient_type, list(emails))

    def set_subject(self, subject: str) -> None:
        self.data["subject"] = subject

    def set_reply_to(self, emails: list[EmailAddress]) -> None:
        if len(emails) > 1:
            self.unsupported_feature("multiple reply_to addresses")
        if emails:
            self.data["reply_to"] = self.mailtrap_address(emails[0])

    def set_extra_headers(self, headers: dict) -> None:
        if headers:
            self.data["headers"] = dict(headers)

    def set_text_body(self, body: str) -> None:
        self.data["text"] = body

    def set_html_body(self, body: str) -> None:
        self.data["html"] = body

    def add_attachment(self, attachment: Attachment) -> None:
        mailtrap_attachment = {
            "content": attachment.b64content,
            "filename": attachment.name or "",
            "type": attachment.mimetype,
        }
        if attachment.inline:
            mailtrap_attachment["disposition"] = "inline"
            mailtrap_attachment["content_id"] = attachment.cid
        self.data.setdefault("attachments", []).append(mailtrap_attachment)

    def set_metadata(self, metadata: dict) -> None:
        # Mailtrap limits custom_variables to 1000 bytes of JSON, and
        # returns them with every webhook event of the message.
        self.metadata = metadata

    def set_merge_metadata(self, merge_metadata: dict) -> None:
        self.merge_metadata = merge_metadata

    def set_merge_headers(self, merge_headers: dict) -> None:
        self.merge_headers = merge_headers

    def set_tags(self, tags: list) -> None:
        if len(tags) > 1:
            self.unsupported_feature("multiple tags")
        if tags:
            self.data["category"] = tags[0]

    def set_template_id(self, template_id: str) -> None:
        self.data["template_uuid"] = template_id
        # A template send takes its subject and body from the template; Django's
        # default empty subject and body must not be sent with it.
        for field in ("subject", "text", "html"):
            if self.data.get(field) == "":
                del self.data[field]

    def set_merge_data(self, merge_data: dict) -> None:
        # Mailtrap substitutes variables only into stored templates.
        if "template_uuid" not in self.data:
            self.unsupported_feature("merge_data without template_id")
            return
        self.merge_data = merge_data

    def set_merge_global_data(self, merge_global_data: dict) -> None:
        if "template_uuid" not in self.data:
            self.unsupported_feature("merge_global_data without template_id")
            return
        self.merge_global_data = merge_global_data

    def set_esp_extra(self, extra: dict) -> None:
        self.esp_extra = extra


class EmailBackend(AnymailRequestsBackend):
    """Send through Mailtrap's Email API, or into a Mailtrap sandbox."""

    esp_name = "Mailtrap"
    payload_class = MailtrapPayload
    required_settings = ("API_TOKEN",)
    optional_settings = ("SANDBOX_ID", "BULK", "API_URL")

    def __init__(self, **kwargs: Any) -> None:
        prefix = self.esp_setting_prefix
        self.api_token = get_anymail_setting(
            "api_token", esp_name=prefix, kwargs=kwargs, allow_bare=True
        )
        # Any false value (None, "", 0) means "not set", so an env file can leave it empty.
        self.sandbox_id = (
            get_anymail_setting("sandbox_id", esp_name=prefix, kwargs=kwargs, default=None) or None
        )
        self.bulk = bool(get_anymail_setting("bulk", esp_name=prefix, kwargs=kwargs, default=False))
        if self.sandbox_id and self.bulk:
            raise AnymailConfigurationError(
                "MAILTRAP_SANDBOX_ID and MAILTRAP_BULK can't both be set: the sandbox "
                "captures mail, the bulk stream delivers it. Unset one of them."
            )
        if self.sandbox_id:
            default_api_url = SANDBOX_API_URL
        elif self.bulk:
            default_api_url = BULK_API_URL
        else:
            default_api_url = TRANSACTIONAL_API_URL
        api_url = get_anymail_setting(
            "api_url", esp_name=prefix, kwargs=kwargs, default=default_api_url
        )
        if not api_url.endswith("/"):
            api_url += "/"
        super().__init__(api_url, **kwargs)

    def raise_for_status(
        self, response: requests.Response, payload: MailtrapPayload, message: EmailMessage
    ) -> None:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {}

        if 200 <= response.status_code <= 299 and not self.refused_everything(body):
            return  # a non-JSON success body is reported by parse_recipient_status

        errors = self.error_messages(body)
        raise AnymailRequestsAPIError(
            *(["Mailtrap API error:\n" + "\n".join(errors)] if errors else []),
            email_message=message,
            payload=payload,
            response=response,
            backend=self,
        )

    @staticmethod
    def refused_everything(body: dict) -> bool:
        """Whether a 2xx answer says nothing was accepted."""
        if body.get("success") is False:
            return True
        # A batch answers 200 even when Mailtrap refused every message in it.
        results = body.get("responses")
        return (
            isinstance(results, list)
            and bool(results)
            and not any(isinstance(result, dict) and result.get("success") for result in results)
        )

    @staticmethod
    def error_messages(body: dict) -> list[str]:
        """Mailtrap's error strings: {"success": false, "errors": ["'from' is required"]}."""
        errors = body.get("errors")
        if isinstance(errors, str):
            errors = [errors]
        messages = [str(error) for error in errors or []]
        for result in body.get("responses") or []:
            if isinstance(result, dict):
                messages.extend(str(error) for error in result.get("errors") or [])
        return messages

    def parse_recipient_status(
        self, response: requests.Response, payload: MailtrapPayload, message: EmailMessage
    ) -> dict[str, AnymailRecipientStatus]:
        data = self.deserialize_json_response(response, payload, message)
        try:
            if payload.is_batch():
                statuses: dict[str, AnymailRecipientStatus] = {}
                results = data["responses"]
                # Accepted messages first: in a batch, a cc gets a copy of every
                # message, and one accepted copy means it was sent.
                for result, recipients in zip(results, payload.batch_recipients, strict=False):
                    if result["success"]:
                        sent = self.sent_statuses(recipients, result["message_ids"])
                        for address, status in sent.items():
                            statuses.setdefault(address.addr_spec, status)
                for result, recipients in zip(results, payload.batch_recipients, strict=False):
                    if not result["success"]:
                        for address in recipients:
                            statuses.setdefault(
                                address.addr_spec, AnymailRecipientStatus(None, "failed")
                            )
            else:
                statuses = {
                    address.addr_spec: status
                    for address, status in self.sent_statuses(
                        payload.all_recipients, data["message_ids"]
                    ).items()
                }
        except (KeyError, TypeError) as err:
            raise AnymailRequestsAPIError(
                "Invalid Mailtrap API response format",
                email_message=message,
                payload=payload,
                response=response,
                backend=self,
            ) from err

        unknown = AnymailRecipientStatus(None, "unknown")
        return {
            address.addr_spec: statuses.get(address.addr_spec, unknown)
            for address in payload.all_recipients
        }

    @staticmethod
    def sent_statuses(
        recipients: list[EmailAddress], message_ids: list[str]
    ) -> dict[EmailAddress, AnymailRecipientStatus]:
        """Pair recipients with message_ids: one id per recipient, in to, cc, bcc order."""
        if len(message_ids) != len(recipients):
            # Mailtrap sent to them, but which id is whose can't be told.
            return {address: AnymailRecipientStatus(None, "sent") for address in recipients}
        return {
            address: AnymailRecipientStatus(str(message_id), "sent")
            for address, message_id in zip(recipients, message_ids, strict=True)
        }
