"""SendGrid: the v3 Mail Send API (POST /v3/mail/send, one JSON body per message).

Reference: https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send
(limits: https://www.twilio.com/docs/sendgrid/api-reference/mail-send/limitations,
errors: https://www.twilio.com/docs/sendgrid/api-reference/mail-send/errors).

SendGrid answers a valid send with ``202 Accepted`` and an empty body. Its only
id, the ``X-Message-Id`` response header, identifies the API request, not a
message or a recipient, and it isn't in the event webhook's payload as such
(events carry ``sg_message_id``, which only starts with it). So mailhub makes
its own id: a uuid per message (per personalization in a batch send), sent as
the custom arg ``mailhub_id``. SendGrid echoes custom args in every event it
posts for that message, which lets the tracking webhook match events to the
recorded recipients. Every recipient's send status is "queued" with that id.
"""

from __future__ import annotations

import uuid
from typing import Any

import requests
from django.core.mail.message import EmailMessage

from ..message import AnymailRecipientStatus
from ..utils import Attachment, EmailAddress, get_anymail_setting, update_deep
from .base_requests import AnymailRequestsBackend, RequestsPayload

DEFAULT_API_URL = "https://api.sendgrid.com/v3/"
# EU regional subusers send through https://api.eu.sendgrid.com/v3/ instead:
# set SENDGRID_API_URL to that.

#: The custom arg that carries mailhub's message id (read by the tracking webhook).
MESSAGE_ID_CUSTOM_ARG = "mailhub_id"

#: "You cannot have more than 10 categories per request."
MAX_CATEGORIES = 10


def new_message_id() -> str:
    """A fresh mailhub_id."""
    return str(uuid.uuid4())


def is_dynamic_template(template_id: str | None) -> bool:
    """Dynamic (Handlebars) template ids start with "d-"; legacy ones are bare uuids."""
    return bool(template_id) and template_id.startswith("d-")


class SendGridPayload(RequestsPayload):
    """Build one v3 Mail Send request.

    Setters store what they are given; ``serialize_data`` assembles the
    personalizations, because a batch send's per-recipient data is only
    known once every setter has run.
    """

    feature_limits = {"tags": f"at most {MAX_CATEGORIES} (sent as SendGrid categories)"}

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
            "Authorization": f"Bearer {backend.api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        super().__init__(message, defaults, backend, suppressed, *args, headers=headers, **kwargs)

    def get_api_endpoint(self) -> str:
        return "mail/send"

    def init_payload(self) -> None:
        self.data: dict[str, Any] = {}  # message-level fields of the request body
        self.to: list[EmailAddress] = []
        self.cc: list[EmailAddress] = []
        self.bcc: list[EmailAddress] = []
        self.text_body: str | None = None
        self.amp_body: str | None = None
        self.html_body: str | None = None
        self.other_content: list[dict[str, str]] = []
        self.template_id: str | None = None
        self.merge_data: dict[str, dict] = {}
        self.merge_global_data: dict[str, Any] = {}
        self.merge_metadata: dict[str, dict] = {}
        self.merge_headers: dict[str, dict] = {}
        self.merge_field_format: str | None = self.backend.merge_field_format
        self.esp_extra: dict[str, Any] = {}
        #: addr_spec -> the mailhub_id of the SendGrid message it was sent in
        self.message_ids: dict[str, str] = {}

    # Assembling the request

    def serialize_data(self) -> str:
        body = dict(self.data)
        content = self.build_content()
        if content:
            body["content"] = content
        body["personalizations"] = self.build_personalizations()

        esp_extra = dict(self.esp_extra)
        extra_personalizations = esp_extra.pop("personalizations", None)
        if isinstance(extra_personalizations, dict):
            for personalization in body["personalizations"]:
                update_deep(personalization, extra_personalizations)
        elif extra_personalizations is not None:
            # A list replaces what mailhub built: the caller owns every recipient
            # (and mailhub's ids went nowhere).
            body["personalizations"] = extra_personalizations
            self.message_ids = {}
        update_deep(body, esp_extra)
        return self.serialize_json(body)

    def build_content(self) -> list[dict[str, str]]:
        # "If included, text/plain and text/html must be the first indices of the
        # array in this order." AMP goes between them, in the order Google
        # recommends (plain, AMP, html), which SendGrid supports.
        content = []
        if self.text_body:
            content.append({"type": "text/plain", "value": self.text_body})
        if self.amp_body:
            content.append({"type": "text/x-amp-html", "value": self.amp_body})
        if self.html_body:
            content.append({"type": "text/html", "value": self.html_body})
        return content + self.other_content

    def build_personalizations(self) -> list[dict[str, Any]]:
        self.message_ids = {}
        if not self.is_batch() or not self.to:
            # One SendGrid message: everyone sees the whole to/cc list.
            personalization = self.new_personalization(self.to)
            personalization.update(self.template_data(self.merge_global_data))
            return [personalization]

        # Batch send: one personalization (one message, one mailhub_id) per "to".
        # cc and bcc go in every one of them, so each cc/bcc address gets a copy
        # of every to-recipient's message, as the documented API promises. (SendGrid
        # only requires an address to be unique within one personalization; the
        # 1000-recipient limit counts the copies.) A cc/bcc recipient's status
        # carries the first message's id; its other copies' events carry theirs.
        personalizations = []
        for to in self.to:
            personalization = self.new_personalization(
                [to], custom_args=self.string_values(self.merge_metadata.get(to.addr_spec, {}))
            )
            merged = {**self.merge_global_data, **self.merge_data.get(to.addr_spec, {})}
            personalization.update(self.template_data(merged))
            if to.addr_spec in self.merge_headers:
                personalization["headers"] = self.string_values(
                    self.merge_headers[to.addr_spec], as_json=False
                )
            personalizations.append(personalization)
        return personalizations

    def new_personalization(
        self, to: list[EmailAddress], custom_args: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """A personalization for to (with every cc and bcc) and a new mailhub_id."""
        personalization: dict[str, Any] = {}
        for kind, addresses in (("to", to), ("cc", self.cc), ("bcc", self.bcc)):
            if addresses:
                personalization[kind] = [self.email_object(address) for address in addresses]
        custom_args = dict(custom_args or {})
        if self.backend.generate_message_id:
            message_id = new_message_id()
            custom_args[MESSAGE_ID_CUSTOM_ARG] = message_id
            for address in [*to, *self.cc, *self.bcc]:
                self.message_ids.setdefault(address.addr_spec, message_id)
        if custom_args:
            # SendGrid merges the message-level custom_args (metadata) into these,
            # these winning, so a metadata key can't hide the id.
            personalization["custom_args"] = custom_args
        return personalization

    def template_data(self, data: dict[str, Any]) -> dict[str, Any]:
        """Merge data in the form the template type wants, as personalization fields."""
        if not data:
            return {}
        if is_dynamic_template(self.template_id):
            return {"dynamic_template_data": data}
        # Legacy and on-the-fly templates substitute strings for delimited
        # fields, and SendGrid has no delimiter of its own: "-{}-" turns
        # "name" into "-name-".
        field_format = self.merge_field_format or "{}"
        return {
            "substitutions": {
                field_format.format(key): value if isinstance(value, str) else str(value)
                for key, value in data.items()
            }
        }

    # Converters

    @staticmethod
    def email_object(address: EmailAddress) -> dict[str, str]:
        obj = {"email": address.addr_spec}
        if address.display_name:
            obj["name"] = address.display_name
        return obj

    def string_values(self, data: dict[str, Any], as_json: bool = True) -> dict[str, str]:
        """SendGrid requires string values in custom_args and headers.

        Non-strings become their JSON text (123 -> "123", True -> "true") so
        they read back unambiguously in webhook events; headers use str().
        """
        convert = self.serialize_json if as_json else str
        return {
            key: value if isinstance(value, str) else convert(value) for key, value in data.items()
        }

    # Setters

    def set_from_email(self, email: EmailAddress) -> None:
        self.data["from"] = self.email_object(email)

    def set_to(self, emails: list[EmailAddress]) -> None:
        self.to = emails

    def set_cc(self, emails: list[EmailAddress]) -> None:
        self.cc = emails

    def set_bcc(self, emails: list[EmailAddress]) -> None:
        self.bcc = emails

    def set_subject(self, subject: str) -> None:
        if subject:
            # An empty subject is left out: a template may supply its own.
            self.data["subject"] = subject

    def set_reply_to(self, emails: list[EmailAddress]) -> None:
        # "reply_to is mutually exclusive with reply_to_list. If both are used,
        # then the API call will be rejected."
        if len(emails) == 1:
            self.data["reply_to"] = self.email_object(emails[0])
        elif emails:
            self.data["reply_to_list"] = [self.email_object(email) for email in emails]

    def set_extra_headers(self, headers: dict) -> None:
        if headers:
            self.data["headers"] = self.string_values(headers, as_json=False)

    def set_text_body(self, body: str) -> None:
        self.text_body = body

    def set_html_body(self, body: str) -> None:
        self.html_body = body

    def set_amp_body(self, body: str) -> None:
        self.amp_body = body

    def add_alternative(self, content: str, mimetype: str) -> None:
        if mimetype in ("text/html", "text/x-amp-html"):
            super().add_alternative(content, mimetype)
        else:
            # SendGrid takes other content types too, after plain and html.
            self.other_content.append({"type": mimetype, "value": content})

    def add_attachment(self, attachment: Attachment) -> None:
        # SendGrid requires a filename; an unnamed inline image goes by its cid.
        filename = attachment.name or (attachment.cid if attachment.inline else "") or ""
        entry = {
            "content": attachment.b64content,
            "filename": filename,
            "type": attachment.mimetype,
            "disposition": "inline" if attachment.inline else "attachment",
        }
        if attachment.inline:
            entry["content_id"] = attachment.cid
        self.data.setdefault("attachments", []).append(entry)

    def set_metadata(self, metadata: dict) -> None:
        if metadata:
            # "The total length of custom arguments must be less than 10000 bytes."
            self.data["custom_args"] = self.string_values(metadata)

    def set_merge_metadata(self, merge_metadata: dict) -> None:
        self.merge_metadata = merge_metadata

    def set_merge_headers(self, merge_headers: dict) -> None:
        self.merge_headers = merge_headers

    def set_send_at(self, send_at: Any) -> None:
        # A unix timestamp; SendGrid refuses to schedule more than 72 hours ahead.
        self.data["send_at"] = int(send_at.timestamp())

    def set_tags(self, tags: list) -> None:
        if not tags:
            return
        if len(tags) > MAX_CATEGORIES:
            self.unsupported_feature(f"more than {MAX_CATEGORIES} tags")
            tags = tags[:MAX_CATEGORIES]  # only reached when unsupported features are ignored
        self.data["categories"] = [str(tag) for tag in tags]

    def set_track_clicks(self, track_clicks: bool) -> None:
        tracking = self.data.setdefault("tracking_settings", {})
        tracking["click_tracking"] = {"enable": bool(track_clicks)}

    def set_track_opens(self, track_opens: bool) -> None:
        tracking = self.data.setdefault("tracking_settings", {})
        tracking["open_tracking"] = {"enable": bool(track_opens)}

    def set_template_id(self, template_id: str) -> None:
        self.template_id = template_id
        self.data["template_id"] = template_id

    def set_merge_data(self, merge_data: dict) -> None:
        self.merge_data = merge_data

    def set_merge_global_data(self, merge_global_data: dict) -> None:
        self.merge_global_data = merge_global_data

    def set_esp_extra(self, extra: dict) -> None:
        extra = dict(extra)
        # Not a SendGrid field: how this message's legacy template delimits fields.
        merge_field_format = extra.pop("merge_field_format", None)
        if merge_field_format is not None:
            self.merge_field_format = merge_field_format
        self.esp_extra = extra

    # envelope_sender stays unsupported: the v3 API has no per-message return
    # path (it comes from the sending domain's authentication settings).


class EmailBackend(AnymailRequestsBackend):
    """Send through SendGrid's v3 Mail Send API."""

    esp_name = "SendGrid"
    payload_class = SendGridPayload
    required_settings = ("API_KEY",)
    optional_settings = ("API_URL", "GENERATE_MESSAGE_ID", "MERGE_FIELD_FORMAT")

    def __init__(self, **kwargs: Any) -> None:
        esp_name = self.esp_setting_prefix
        self.api_key = get_anymail_setting(
            "api_key", esp_name=esp_name, kwargs=kwargs, allow_bare=True
        )
        self.generate_message_id = get_anymail_setting(
            "generate_message_id", esp_name=esp_name, kwargs=kwargs, default=True
        )
        self.merge_field_format = get_anymail_setting(
            "merge_field_format", esp_name=esp_name, kwargs=kwargs, default=None
        )
        api_url = get_anymail_setting(
            "api_url", esp_name=esp_name, kwargs=kwargs, default=DEFAULT_API_URL
        )
        if not api_url.endswith("/"):
            api_url += "/"
        super().__init__(api_url, **kwargs)

    def parse_recipient_status(
        self, response: requests.Response, payload: SendGridPayload, message: EmailMessage
    ) -> dict[str, AnymailRecipientStatus]:
        # 202 Accepted has an empty body: there is nothing to parse, and SendGrid
        # reports per-recipient problems (drops, bounces) only as events later.
        return {
            address.addr_spec: AnymailRecipientStatus(
                message_id=payload.message_ids.get(address.addr_spec), status="queued"
            )
            for address in payload.all_recipients
        }
