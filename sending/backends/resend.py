"""Resend: the Email API's /emails and /emails/batch endpoints.

A message is one POST of JSON to ``<api url>emails`` with
``Authorization: Bearer <RESEND_API_KEY>``; Resend answers ``{"id": "..."}``
and every recipient shares that id. A batch send (merge_data, merge_metadata
or merge_headers) is one POST to ``emails/batch`` of a list with one email
per "to" recipient (each carrying the message's cc and bcc), answered with
``{"data": [{"id": ...}, ...]}`` in the same order. Resend's batch endpoint
takes at most 100 emails and no attachments or scheduled_at.

Tags and metadata: Resend's "tags" are name/value pairs, returned with
Resend's webhook events. mailhub sends each metadata item as a Resend tag
(name = key, value = the value as a string), and the message's tag as the
Resend tag named ``tag``, so there can be one (and no metadata key "tag",
which keeps the two apart in Resend's events). Resend allows only ASCII
letters, numbers, underscores and dashes (up to 256 characters) in tag names
and values; anything else raises AnymailUnsupportedFeature saying which
item (with IGNORE_UNSUPPORTED_FEATURES, that item is left out).

Templates: template_id is sent as ``"template": {"id": ..., "variables": ...}``
with merge_global_data (and, in a batch, each recipient's merge_data) as the
variables. Resend substitutes variables only into stored templates, so
merge_data and merge_global_data need a template_id.

esp_extra merges into each email sent; its ``"idempotency_key"`` is sent as
Resend's ``Idempotency-Key`` request header instead.

Reference: https://resend.com/docs/api-reference/emails/send-email,
https://resend.com/docs/api-reference/emails/send-batch-emails,
https://resend.com/docs/api-reference/errors
"""

from __future__ import annotations

import copy
import re
from datetime import UTC
from typing import Any

import requests
from django.core.mail.message import EmailMessage

from ..exceptions import AnymailRequestsAPIError
from ..message import AnymailRecipientStatus
from ..utils import Attachment, EmailAddress, get_anymail_setting, update_deep
from .base_requests import AnymailRequestsBackend, RequestsPayload

DEFAULT_API_URL = "https://api.resend.com/"
MAX_BATCH_EMAILS = 100
TAG_NAME = "tag"  # the Resend tag that carries the message's (one) tag
# "Tags can include ASCII letters, numbers, underscores, or dashes."
VALID_TAG_TEXT = re.compile(r"[A-Za-z0-9_-]{1,256}")
TAG_TEXT_RULE = (
    "Resend tag names and values may contain only ASCII letters, numbers, "
    "underscores and dashes, up to 256 characters"
)


class ResendPayload(RequestsPayload):
    """Builds a Resend /emails request, or an /emails/batch one."""

    feature_limits = {
        "tags": "one tag per message (sent as the Resend tag named 'tag')",
        "metadata": "ASCII letters, numbers, '_' and '-' only (sent as Resend tags)",
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
                "Authorization": f"Bearer {backend.api_key}",
                "Content-Type": "application/json",
            },
            **kwargs,
        )
        # Every setter has run: check what depends on several attributes.
        if self.is_batch():
            self.check_batch()

    def check_batch(self) -> None:
        # The batch endpoint's documented limits: "attachments and scheduled_at
        # fields are not supported yet", and up to 100 emails per call.
        if "attachments" in self.data:
            self.unsupported_feature("attachments with batch sending")
        if "scheduled_at" in self.data:
            self.unsupported_feature("send_at with batch sending")
        if len(self.to) > MAX_BATCH_EMAILS:
            self.unsupported_feature(
                f"batch sending to more than {MAX_BATCH_EMAILS} 'to' recipients"
            )

    def get_api_endpoint(self) -> str:
        return "emails/batch" if self.is_batch() else "emails"

    def init_payload(self) -> None:
        self.data: dict[str, Any] = {}  # the fields every email shares
        self.to: list[EmailAddress] = []
        self.tag: str | None = None
        self.metadata: dict | None = None
        self.merge_metadata: dict = {}
        self.merge_headers: dict = {}
        self.merge_data: dict = {}
        self.merge_global_data: dict | None = None
        self.esp_extra: dict = {}

    def serialize_data(self) -> str:
        if not self.is_batch():
            return self.serialize_json(self.email(self.to))
        return self.serialize_json([self.email([to]) for to in self.to])

    def email(self, to: list[EmailAddress]) -> dict[str, Any]:
        """One Resend email: the shared fields plus those of the "to" recipients given."""
        email = copy.deepcopy(self.data)
        if to:
            email["to"] = [address.address for address in to]
        addr_spec = to[0].addr_spec if self.is_batch() and to else None

        metadata = {**(self.metadata or {}), **self.merge_metadata.get(addr_spec, {})}
        tags = [{"name": TAG_NAME, "value": self.tag}] if self.tag is not None else []
        tags += [{"name": key, "value": value} for key, value in metadata.items()]
        if tags:
            email["tags"] = tags

        headers = {**email.get("headers", {}), **self.merge_headers.get(addr_spec, {})}
        if headers:
            email["headers"] = headers

        if "template" in email:
            variables = {**(self.merge_global_data or {}), **self.merge_data.get(addr_spec, {})}
            if variables:
                email["template"]["variables"] = variables

        update_deep(email, copy.deepcopy(self.esp_extra))
        return email

    def valid_tag_items(self, items: dict, attr: str) -> dict[str, str]:
        """Return metadata items as Resend tag names and values, leaving out any Resend refuses."""
        valid = {}
        for key, value in items.items():
            name, text = str(key), str(value)
            if name == TAG_NAME:
                reason = f"the Resend tag {TAG_NAME!r} carries the message's tag"
                self.unsupported_feature(f"{attr} key {TAG_NAME!r} ({reason})")
            elif is_valid_tag_text(name) and is_valid_tag_text(text):
                valid[name] = text
            else:
                self.unsupported_feature(f"{attr} item {name!r}: {text!r} ({TAG_TEXT_RULE})")
        return valid

    # Setters

    def set_from_email(self, email: EmailAddress) -> None:
        self.data["from"] = email.address

    def set_to(self, emails: list[EmailAddress]) -> None:
        self.to = emails

    def set_cc(self, emails: list[EmailAddress]) -> None:
        self.data["cc"] = [email.address for email in emails]

    def set_bcc(self, emails: list[EmailAddress]) -> None:
        self.data["bcc"] = [email.address for email in emails]

    def set_subject(self, subject: str) -> None:
        # Django's default subject is "", which would override a template's subject.
        if subject:
            self.data["subject"] = subject

    def set_reply_to(self, emails: list[EmailAddress]) -> None:
        if emails:
            self.data["reply_to"] = [email.address for email in emails]

    def set_extra_headers(self, headers: dict) -> None:
        if headers:
            self.data["headers"] = headers

    def set_text_body(self, body: str) -> None:
        # Left out when empty: Resend then derives the text from the HTML (and an
        # empty "text" is refused with a template).
        if body:
            self.data["text"] = body

    def set_html_body(self, body: str) -> None:
        self.data["html"] = body

    def add_attachment(self, attachment: Attachment) -> None:
        item = {"content": attachment.b64content, "content_type": attachment.mimetype}
        if attachment.name:
            item["filename"] = attachment.name
        if attachment.inline and attachment.cid:
            item["content_id"] = attachment.cid
        self.data.setdefault("attachments", []).append(item)

    def set_metadata(self, metadata: dict) -> None:
        self.metadata = self.valid_tag_items(metadata, "metadata")

    def set_merge_metadata(self, merge_metadata: dict) -> None:
        self.merge_metadata = {
            addr_spec: self.valid_tag_items(metadata, "merge_metadata")
            for addr_spec, metadata in merge_metadata.items()
        }

    def set_merge_headers(self, merge_headers: dict) -> None:
        self.merge_headers = merge_headers

    def set_send_at(self, send_at: Any) -> None:
        self.data["scheduled_at"] = send_at.astimezone(UTC).isoformat()

    def set_tags(self, tags: list) -> None:
        if len(tags) > 1:
            self.unsupported_feature("multiple tags")
        if not tags:
            return
        tag = str(tags[0])
        if is_valid_tag_text(tag):
            self.tag = tag
        else:
            self.unsupported_feature(f"tag {tag!r} ({TAG_TEXT_RULE})")

    def set_template_id(self, template_id: str) -> None:
        self.data["template"] = {"id": template_id}

    def set_merge_data(self, merge_data: dict) -> None:
        if "template" not in self.data:
            self.unsupported_feature("merge_data without template_id")
            return
        self.merge_data = merge_data

    def set_merge_global_data(self, merge_global_data: dict) -> None:
        if "template" not in self.data:
            self.unsupported_feature("merge_global_data without template_id")
            return
        self.merge_global_data = merge_global_data

    def set_esp_extra(self, extra: dict) -> None:
        extra = dict(extra)
        idempotency_key = extra.pop("idempotency_key", None)
        if idempotency_key:
            self.headers["Idempotency-Key"] = str(idempotency_key)
        self.esp_extra = extra

    def set_idempotency_key(self, key: str) -> None:
        # A key the sender chose in esp_extra wins over mailhub's own.
        self.headers.setdefault("Idempotency-Key", key)


class EmailBackend(AnymailRequestsBackend):
    """Send through Resend's Email API."""

    esp_name = "Resend"
    payload_class = ResendPayload
    required_settings = ("API_KEY",)
    # "Idempotency keys ... ensure that the same email request is processed only
    # once" for 24 hours: a retry with the same key returns the first answer.
    supports_idempotency_key = True
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

    def parse_recipient_status(
        self, response: requests.Response, payload: ResendPayload, message: EmailMessage
    ) -> dict[str, AnymailRecipientStatus]:
        body = self.deserialize_json_response(response, payload, message)
        try:
            if payload.is_batch():
                # {"data": [{"id": "ae2014de-..."}, {"id": "faccb7a5-..."}]}, one per "to"
                ids = [str(item["id"]) for item in body["data"]]
                if len(ids) != len(payload.to):
                    raise ValueError(f"{len(ids)} ids for {len(payload.to)} emails")
            else:
                # {"id": "49a3999c-0ce1-4ea6-ab68-afcd6dc2e794"}
                ids = [str(body["id"])]
        except (KeyError, TypeError, ValueError) as err:
            raise AnymailRequestsAPIError(
                "Invalid Resend API response format",
                email_message=message,
                payload=payload,
                response=response,
                backend=self,
            ) from err

        # Resend queues everything it accepts (scheduled emails included).
        statuses = {}
        if payload.is_batch():
            for address, message_id in zip(payload.to, ids, strict=True):
                statuses[address.addr_spec] = AnymailRecipientStatus(message_id, "queued")
        # cc and bcc get a copy of each batch email; their status carries the first id.
        for address in payload.all_recipients:
            statuses.setdefault(address.addr_spec, AnymailRecipientStatus(ids[0], "queued"))
        return statuses


def is_valid_tag_text(text: str) -> bool:
    """Whether Resend accepts text as a tag name or value."""
    return VALID_TAG_TEXT.fullmatch(text) is not None
