"""Mailgun: send through Mailgun's Messages API.

    POST {MAILGUN_API_URL}{sender domain}/messages
    (https://documentation.mailgun.com/docs/mailgun/api-reference/send/mailgun/messages)

Authentication is HTTP basic auth with the user "api" and the API key; the
body is multipart/form-data, one form field per value ("to" once per
address, "o:tag" once per tag), with attachments as "attachment" files and
inline images as "inline" files.

Settings (in ANYMAIL, or as ANYMAIL_MAILGUN_<NAME>):

- MAILGUN_API_KEY (required; also read from a bare MAILGUN_API_KEY setting).
- MAILGUN_SENDER_DOMAIN: the Mailgun sending domain, when it differs from the
  from_email's domain. A message can choose another with envelope_sender
  (only its domain is used) or esp_extra["sender_domain"].
- MAILGUN_API_URL: the API base *including the version*, default
  "https://api.mailgun.net/v3/"; for Mailgun's EU region use
  "https://api.eu.mailgun.net/v3/". A bare host ("https://api.eu.mailgun.net",
  as Mailgun's reference lists its servers) gets "/v3/" added.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

import requests
from django.core.mail.message import EmailMessage

from ..exceptions import AnymailRequestsAPIError
from ..message import AnymailRecipientStatus
from ..utils import Attachment, CaseInsensitiveDict, EmailAddress, get_anymail_setting, rfc2822date
from .base_requests import AnymailRequestsBackend, RequestsPayload

DEFAULT_API_URL = "https://api.mailgun.net/v3/"

# "A single message may be marked with up to 3 tags."
# (https://documentation.mailgun.com/docs/mailgun/user-manual/tracking-messages/track-tagging)
MAX_TAGS = 3
# "The maximum number of recipients allowed for batch is 1,000."
# (https://documentation.mailgun.com/docs/mailgun/user-manual/sending-messages/batch-sending)
MAX_BATCH_RECIPIENTS = 1000


def mailgun_api_url(url: str) -> str:
    """Return url ending in "/", adding Mailgun's "v3/" to a bare host."""
    if urlsplit(url).path in ("", "/"):
        url = url.rstrip("/") + "/v3"
    return url if url.endswith("/") else url + "/"


class MailgunPayload(RequestsPayload):
    """A message as the form fields and files of a Mailgun Messages API request.

    Personalization all goes through two Mailgun parameters, so it is put
    together in serialize_data(), once every setter has run:

    - "v:<key>" custom data carries metadata (reported back in webhooks'
      user-variables) and, for a stored template, the template's variables.
    - "recipient-variables" makes the send a batch (each "to" gets their own
      message) and supplies per-recipient values that Mailgun substitutes for
      "%recipient.<key>%" in the subject, bodies, headers and custom data.
      merge_data uses plain keys, merge_metadata "v:<key>" and merge_headers
      "h:<Header>", so the three can't collide (merge_data keys must not start
      with "v:" or "h:").
    """

    feature_limits = {
        "tags": f"up to {MAX_TAGS} tags per message",
        "envelope_sender": "only the domain is used, to choose the Mailgun sending domain",
        "merge_data": f"batch sends to up to {MAX_BATCH_RECIPIENTS:,} 'to' recipients",
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
        auth = ("api", backend.api_key)
        super().__init__(message, defaults, backend, suppressed, *args, auth=auth, **kwargs)
        # Checked here, after every setter ran, so a refused message is never recorded as sent.
        self.check_personalization()

    def init_payload(self) -> None:
        self.fields: dict[str, list[str]] = {}  # form field -> its values, in order
        self.files: list[tuple[str, tuple[str, bytes, str]]] = []
        self.headers_to_send = CaseInsensitiveDict()
        self.metadata: dict = {}
        self.template_id: str | None = None
        self.merge_data: dict | None = None
        self.merge_global_data: dict | None = None
        self.merge_metadata: dict | None = None
        self.merge_headers: dict | None = None
        self.esp_extra: dict = {}
        self.from_domain = ""
        self.envelope_domain: str | None = None
        self.extra_sender_domain: str | None = None

    # Request

    @property
    def sender_domain(self) -> str:
        """The Mailgun sending domain: the most specific one given wins."""
        return (
            self.extra_sender_domain
            or self.envelope_domain
            or self.backend.sender_domain
            or self.from_domain
        )

    def get_api_endpoint(self) -> str:
        # Quoted so a domain can't change the path ("/") or be read as a URL scheme (":").
        return f"{quote(self.sender_domain, safe='')}/messages"

    def get_request_params(self, api_url: str) -> dict[str, Any]:
        params = super().get_request_params(api_url)
        # requests only builds multipart/form-data when there are files, so
        # send every field as a filename-less part: one encoding whether or
        # not the message has attachments.
        fields = params.pop("data")
        params["data"] = None
        params["files"] = [(name, (None, value)) for name, value in fields] + self.files
        return params

    def serialize_data(self) -> list[tuple[str, str]]:
        """Return the form fields as (name, value) pairs, personalization included."""
        fields = {name: list(values) for name, values in self.fields.items()}
        if self.template_id and fields.get("text") == [""]:
            # Django gives every message a body, "" by default: don't let an
            # empty text part stand in for the stored template's own.
            del fields["text"]
        headers = CaseInsensitiveDict(self.headers_to_send)
        custom_data = dict(self.metadata)
        recipient_variables = self.build_recipient_variables(fields, headers, custom_data)

        for name, value in headers.items():
            fields[f"h:{name}"] = [value]
        for key, value in custom_data.items():
            # Mailgun parses JSON in custom data, so non-string values keep their type.
            fields[f"v:{key}"] = [value if isinstance(value, str) else self.serialize_json(value)]
        if recipient_variables is not None:
            fields["recipient-variables"] = [self.serialize_json(recipient_variables)]

        for name, value in self.esp_extra.items():
            if value is None:
                fields.pop(name, None)  # esp_extra can remove a field mailhub would send
            else:
                fields[name] = self.form_values(value)

        return [(name, value) for name, values in fields.items() for value in values]

    def build_recipient_variables(
        self, fields: dict[str, list[str]], headers: CaseInsensitiveDict, custom_data: dict
    ) -> dict[str, dict] | None:
        """Return Mailgun's recipient-variables (or None), updating what refers to them.

        Every "to" recipient gets an entry (Mailgun sends each "to" their own
        message only when there are recipient-variables), and every entry has
        every key, defaulting to "" so no "%recipient.x%" is left in the mail.
        """
        to_emails = [email.addr_spec for email in self.recipients_by_kind["to"]]
        per_recipient: dict[str, dict] = {addr: {} for addr in to_emails}
        used = False

        if self.merge_metadata is not None:
            used = True
            keys = self.all_keys(self.merge_metadata.values())
            for key in keys:
                custom_data[key] = f"%recipient.v:{key}%"
            for addr in to_emails:
                values = self.merge_metadata.get(addr, {})
                for key in keys:
                    per_recipient[addr][f"v:{key}"] = values.get(key, self.metadata.get(key, ""))

        if self.merge_headers is not None:
            used = True
            names = self.all_keys(self.merge_headers.values(), case_insensitive=True)
            defaults = {name: headers.get(name, "") for name in names}
            for name in names:
                headers[name] = f"%recipient.h:{name}%"
            for addr in to_emails:
                values = CaseInsensitiveDict(self.merge_headers.get(addr, {}))
                for name in names:
                    per_recipient[addr][f"h:{name}"] = str(values.get(name, defaults[name]))

        global_data = self.merge_global_data or {}
        if self.merge_data is not None or (global_data and not self.template_id):
            # Mailgun has no global merge data: copy it into every recipient's
            # variables. Without merge_data this still makes the send a batch,
            # as Mailgun substitutes %recipient.x% only in batch sends.
            used = True
            merge_data = self.merge_data or {}
            keys = self.all_keys([*merge_data.values(), global_data])
            for addr in to_emails:
                values = merge_data.get(addr, {})
                for key in keys:
                    per_recipient[addr][key] = values.get(key, global_data.get(key, ""))
            if self.template_id:
                # A stored (handlebars) template takes its variables from custom
                # data; Mailgun fills the %recipient.x% in per recipient.
                for key in keys:
                    custom_data[key] = f"%recipient.{key}%"
        elif global_data:
            # One message from a stored template: pass its variables as
            # t:variables, so they don't show up as metadata in webhooks.
            fields["t:variables"] = [self.serialize_json(global_data)]

        return per_recipient if used else None

    def check_personalization(self) -> None:
        """Refuse what Mailgun's batch sending can't carry out as asked."""
        if self.is_batch() and len(self.recipients_by_kind["to"]) > MAX_BATCH_RECIPIENTS:
            self.unsupported_feature(
                f"batch sending to more than {MAX_BATCH_RECIPIENTS:,} 'to' recipients"
            )
        if self.template_id and self.merge_data is not None:
            # Template variables and metadata share Mailgun's custom data ("v:").
            template_keys = self.all_keys([*self.merge_data.values(), self.merge_global_data or {}])
            metadata_keys = set(self.metadata) | set(
                self.all_keys((self.merge_metadata or {}).values())
            )
            clashes = sorted(set(template_keys) & metadata_keys)
            if clashes:
                self.unsupported_feature(
                    "the same key in metadata and merge_data with a stored template "
                    f"({', '.join(clashes)})"
                )

    @staticmethod
    def all_keys(dicts: Any, case_insensitive: bool = False) -> list[str]:
        """Every key used in any of dicts, in first-seen order."""
        keys: dict[str, str] = {}
        for values in dicts:
            for key in values:
                keys.setdefault(key.lower() if case_insensitive else key, key)
        return list(keys.values())

    def form_values(self, value: Any) -> list[str]:
        """Convert an esp_extra value to form values: a list repeats the field."""
        if isinstance(value, (list, tuple)):
            return [item for element in value for item in self.form_values(element)]
        if isinstance(value, bool):
            return ["yes" if value else "no"]
        if isinstance(value, dict):
            return [self.serialize_json(value)]  # t:variables, recipient-variables
        return [str(value)]

    # Setters

    def set_from_email(self, email: EmailAddress) -> None:
        self.fields["from"] = [email.address]
        self.from_domain = email.domain

    def add_recipient(self, recipient_type: str, email: EmailAddress) -> None:
        self.fields.setdefault(recipient_type, []).append(email.address)

    def set_subject(self, subject: str) -> None:
        self.fields["subject"] = [subject]

    def set_reply_to(self, emails: list[EmailAddress]) -> None:
        if emails:
            self.headers_to_send["Reply-To"] = ", ".join(email.address for email in emails)

    def set_extra_headers(self, headers: dict) -> None:
        for name, value in headers.items():
            self.headers_to_send[name] = str(value)

    def set_text_body(self, body: str) -> None:
        self.fields["text"] = [body]

    def set_html_body(self, body: str) -> None:
        self.fields["html"] = [body]

    def set_amp_body(self, body: str) -> None:
        self.fields["amp-html"] = [body]

    def add_attachment(self, attachment: Attachment) -> None:
        # Mailgun silently drops attachments without a filename, and uses an
        # inline file's filename as its Content-ID (so <img src="cid:...">
        # works): refuse what it would drop rather than lose it unseen.
        if attachment.inline:
            if not attachment.cid:
                self.unsupported_feature("inline attachments without Content-ID")
                return
            self.files.append(("inline", (attachment.cid, attachment.content, attachment.mimetype)))
        else:
            if not attachment.name:
                self.unsupported_feature("attachments without filenames")
                return
            self.files.append(
                ("attachment", (attachment.name, attachment.content, attachment.mimetype))
            )

    def set_envelope_sender(self, email: EmailAddress) -> None:
        # Mailgun sets the Return-Path itself (for bounce handling); all a
        # message can choose is the sending domain, so the local part is ignored.
        self.envelope_domain = email.domain

    def set_metadata(self, metadata: dict) -> None:
        self.metadata = metadata

    def set_send_at(self, send_at: Any) -> None:
        # Mailgun schedules up to 3 or 7 days ahead, depending on the plan.
        self.fields["o:deliverytime"] = [rfc2822date(send_at)]

    def set_tags(self, tags: list) -> None:
        if len(tags) > MAX_TAGS:
            self.unsupported_feature(f"more than {MAX_TAGS} tags")
            tags = tags[:MAX_TAGS]  # ignoring unsupported features: send the first ones
        if tags:
            self.fields["o:tag"] = [str(tag) for tag in tags]

    def set_track_clicks(self, track_clicks: bool) -> None:
        # (o:tracking switches both clicks and opens; use esp_extra for it.)
        self.fields["o:tracking-clicks"] = ["yes" if track_clicks else "no"]

    def set_track_opens(self, track_opens: bool) -> None:
        self.fields["o:tracking-opens"] = ["yes" if track_opens else "no"]

    def set_template_id(self, template_id: str) -> None:
        # A stored template's name (or ID); pick a version with esp_extra {"t:version": ...}.
        self.fields["template"] = [template_id]
        self.template_id = template_id

    def set_merge_data(self, merge_data: dict) -> None:
        self.merge_data = merge_data

    def set_merge_global_data(self, merge_global_data: dict) -> None:
        self.merge_global_data = merge_global_data

    def set_merge_metadata(self, merge_metadata: dict) -> None:
        self.merge_metadata = merge_metadata

    def set_merge_headers(self, merge_headers: dict) -> None:
        self.merge_headers = merge_headers

    def set_esp_extra(self, extra: dict) -> None:
        extra = dict(extra)
        sender_domain = extra.pop("sender_domain", None)
        if sender_domain:
            self.extra_sender_domain = sender_domain
        self.esp_extra = extra


class EmailBackend(AnymailRequestsBackend):
    """Send email through Mailgun's Messages API."""

    esp_name = "Mailgun"
    payload_class = MailgunPayload
    required_settings = ("API_KEY",)
    optional_settings = ("SENDER_DOMAIN", "API_URL")

    def __init__(self, **kwargs: Any) -> None:
        esp_name = self.esp_setting_prefix
        self.api_key = get_anymail_setting(
            "api_key", esp_name=esp_name, kwargs=kwargs, allow_bare=True
        )
        self.sender_domain = get_anymail_setting(
            "sender_domain", esp_name=esp_name, kwargs=kwargs, default=None
        )
        api_url = get_anymail_setting(
            "api_url", esp_name=esp_name, kwargs=kwargs, default=DEFAULT_API_URL
        )
        super().__init__(mailgun_api_url(api_url), **kwargs)

    def parse_recipient_status(
        self, response: requests.Response, payload: MailgunPayload, message: EmailMessage
    ) -> dict[str, AnymailRecipientStatus]:
        # {"id": "<20160101000000.1.ABCD@mg.example.com>", "message": "Queued. Thank you."}
        parsed = self.deserialize_json_response(response, payload, message)
        message_id = parsed.get("id") if isinstance(parsed, dict) else None
        if not message_id:
            raise AnymailRequestsAPIError(
                "Invalid Mailgun API response format",
                email_message=message,
                payload=payload,
                response=response,
                backend=self,
            )
        # Mailgun queues every accepted message (a batch shares one id); it
        # reports refusals later, as events.
        status = AnymailRecipientStatus(message_id=message_id, status="queued")
        return {email.addr_spec: status for email in payload.all_recipients}
