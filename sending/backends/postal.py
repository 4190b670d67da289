"""Postal (self-hosted): the legacy HTTP API, send/message and send/raw.

A message goes as JSON to ``<POSTAL_API_URL>api/v1/send/message`` with the
server's API key in the ``X-Server-API-Key`` header. That structured API
can't express everything a Django message can: it has no Content-ID for
inline images and no body parts other than plain text and HTML. A message
that needs either (or whose esp_extra has ``"send_raw": True``) is built as
MIME here and sent to ``api/v1/send/raw`` instead, with ``mail_from`` and
``rcpt_to`` as the envelope (bcc recipients are envelope-only).

Postal answers HTTP 200 even for errors and puts the outcome in the body:
``{"status": "error", "data": {"code": "UnauthenticatedFromAddress", "message": ...}}``
(or ``"parameter-error"``), so the backend raises AnymailAPIError for any
status other than ``"success"``, quoting Postal's code and message. Postal
echoes a rejected API key back (``data.token`` of InvalidServerAPIKey); the
backend blanks it in the response before the error text quotes it, and
DEBUG_API_REQUESTS prints the request with the API key header replaced.

Mapping notes:

* tags: Postal keeps one ``tag`` per message (the ``X-Postal-Tag`` header
  in a raw message, which Postal reads the same way).
* envelope_sender: Postal always sends with its own return path, so this is
  sent as ``sender`` (the Sender header, which Postal also accepts for domain
  authentication); a raw message also uses it as ``mail_from``.
* esp_extra merges into the JSON body (e.g. ``{"bounce": True}``); its
  ``"send_raw"`` key is mailhub's and is not sent.
* metadata, send_at, tracking options, templates and batch merge data have
  no counterpart in Postal's API and are unsupported.

Reference: https://docs.postalserver.io/developer/api and the API
controllers (app/controllers/legacy_api/send_controller.rb) in
https://github.com/postalserver/postal
"""

from __future__ import annotations

import base64
import copy
import json
from email.message import EmailMessage as MIMEMessage
from email.policy import SMTP
from email.utils import formatdate, make_msgid
from typing import Any

import requests
from django.core.mail.message import EmailMessage

from ..exceptions import AnymailRequestsAPIError
from ..message import AnymailRecipientStatus
from ..utils import REDACTED, Attachment, EmailAddress, get_anymail_setting, update_deep
from .base_requests import AnymailRequestsBackend, RequestsPayload

API_KEY_HEADER = "X-Server-API-Key"


class PostalPayload(RequestsPayload):
    """Builds a Postal send/message request, or a send/raw one when needed."""

    feature_limits = {
        "tags": "one tag per message",
        "envelope_sender": "sent as the Sender header (Postal uses its own return path)",
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
            headers={"Content-Type": "application/json", API_KEY_HEADER: backend.api_key},
            **kwargs,
        )

    def get_api_endpoint(self) -> str:
        return "api/v1/send/raw" if self.needs_raw() else "api/v1/send/message"

    def needs_raw(self) -> bool:
        """Whether the message needs Postal's raw MIME API."""
        return bool(self.inline_attachments or self.other_alternatives or self.send_raw)

    def init_payload(self) -> None:
        self.data: dict[str, Any] = {}  # the structured send/message body
        self.envelope_sender: EmailAddress | None = None
        # What only the raw API can carry:
        self.inline_attachments: list[Attachment] = []
        self.other_alternatives: list[tuple[str, str]] = []  # (content, mimetype)
        self.send_raw = False
        self.from_email: EmailAddress | None = None
        self.esp_extra: dict = {}

    def serialize_data(self) -> str:
        data = self.raw_data() if self.needs_raw() else copy.deepcopy(self.data)
        update_deep(data, copy.deepcopy(self.esp_extra))
        return self.serialize_json(data)

    # The raw API

    def raw_data(self) -> dict[str, Any]:
        """The send/raw body: the envelope and the base64 MIME message."""
        envelope_from = self.envelope_sender or self.from_email
        return {
            "mail_from": envelope_from.addr_spec if envelope_from else "",
            "rcpt_to": [address.addr_spec for address in self.all_recipients],
            "data": base64.b64encode(self.mime_message().as_bytes()).decode("ascii"),
        }

    def mime_message(self) -> MIMEMessage:
        """Build the RFC 5322 message from the structured fields."""
        data = self.data
        mime = MIMEMessage(policy=SMTP)  # CRLF line endings, as Postal splits on them
        for header, field in (("From", "from"), ("Sender", "sender"), ("Reply-To", "reply_to")):
            if data.get(field):
                mime[header] = data[field]
        for header, field in (("To", "to"), ("Cc", "cc")):  # bcc stays off the message
            if data.get(field):
                mime[header] = ", ".join(data[field])
        if data.get("subject") is not None:
            mime["Subject"] = data["subject"]
        if data.get("tag"):
            mime["X-Postal-Tag"] = data["tag"]
        for name, value in (data.get("headers") or {}).items():
            mime[name] = str(value)
        if "Date" not in mime:
            mime["Date"] = formatdate(usegmt=True)
        if "Message-ID" not in mime:
            domain = self.from_email.domain if self.from_email else None
            mime["Message-ID"] = make_msgid(domain=domain or None)

        # Alternatives in increasing order of preference: text, others (AMP), html.
        bodies: list[tuple[str, str]] = []
        if data.get("plain_body"):
            bodies.append((data["plain_body"], "text/plain"))
        bodies.extend(self.other_alternatives)
        if data.get("html_body"):
            bodies.append((data["html_body"], "text/html"))
        html_part = None
        for index, (content, mimetype) in enumerate(bodies):
            subtype = mimetype.partition("/")[2]
            if index == 0:
                mime.set_content(content, subtype=subtype)
            else:
                mime.add_alternative(content, subtype=subtype)
            if mimetype == "text/html":
                html_part = mime if len(bodies) == 1 else mime.get_payload()[-1]

        for attachment in self.inline_attachments:
            maintype, _, subtype = attachment.mimetype.partition("/")
            params = {"cid": attachment.content_id, "filename": attachment.name}
            # In a multipart/related with the html that refers to it, where it can be shown.
            target = html_part.add_related if html_part is not None else mime.add_attachment
            target(attachment.content, maintype, subtype, disposition="inline", **params)
        for attachment in data.get("attachments") or []:
            maintype, _, subtype = attachment["content_type"].partition("/")
            mime.add_attachment(
                base64.b64decode(attachment["data"]),
                maintype,
                subtype,
                filename=attachment["name"] or None,
            )
        return mime

    # Setters

    def set_from_email(self, email: EmailAddress) -> None:
        self.from_email = email
        self.data["from"] = email.address

    def add_recipient(self, recipient_type: str, email: EmailAddress) -> None:
        self.data.setdefault(recipient_type, []).append(email.address)

    def set_subject(self, subject: str) -> None:
        self.data["subject"] = subject

    def set_reply_to(self, emails: list[EmailAddress]) -> None:
        if emails:
            self.data["reply_to"] = ", ".join(email.address for email in emails)

    def set_extra_headers(self, headers: dict) -> None:
        if headers:
            self.data["headers"] = headers

    def set_text_body(self, body: str) -> None:
        self.data["plain_body"] = body

    def set_html_body(self, body: str) -> None:
        self.data["html_body"] = body

    def add_alternative(self, content: str, mimetype: str) -> None:
        if mimetype == "text/html" and "html_body" not in self.data:
            super().add_alternative(content, mimetype)
        else:
            self.other_alternatives.append((content, mimetype))

    def add_attachment(self, attachment: Attachment) -> None:
        if attachment.inline:
            self.inline_attachments.append(attachment)
            return
        self.data.setdefault("attachments", []).append(
            {
                "name": attachment.name or "",
                "content_type": attachment.mimetype,
                "data": attachment.b64content,
            }
        )

    def set_envelope_sender(self, email: EmailAddress) -> None:
        self.envelope_sender = email
        self.data["sender"] = email.address

    def set_tags(self, tags: list) -> None:
        if len(tags) > 1:
            self.unsupported_feature("multiple tags")
        if tags:
            self.data["tag"] = tags[0]

    def set_esp_extra(self, extra: dict) -> None:
        extra = dict(extra)
        self.send_raw = bool(extra.pop("send_raw", False))
        self.esp_extra = extra


class EmailBackend(AnymailRequestsBackend):
    """Send through a Postal mail server's HTTP API."""

    esp_name = "Postal"
    payload_class = PostalPayload
    required_settings = ("API_KEY", "API_URL")
    optional_settings = ()

    def __init__(self, **kwargs: Any) -> None:
        prefix = self.esp_setting_prefix
        self.api_key = get_anymail_setting(
            "api_key", esp_name=prefix, kwargs=kwargs, allow_bare=True
        )
        # Postal is self-hosted: there is no default server to call.
        api_url = get_anymail_setting("api_url", esp_name=prefix, kwargs=kwargs)
        if not api_url.endswith("/"):
            api_url += "/"
        super().__init__(api_url, **kwargs)

    def raise_for_status(
        self, response: requests.Response, payload: PostalPayload, message: EmailMessage
    ) -> None:
        blank_echoed_key(response)
        super().raise_for_status(response, payload, message)
        try:
            body = response.json()
        except ValueError:
            return  # parse_recipient_status reports a body that isn't JSON
        if not isinstance(body, dict) or body.get("status") == "success":
            return
        # {"status": "error", "data": {"code": "NoRecipients", "message": "There are no ..."}}
        # {"status": "parameter-error", "data": {"message": "`rcpt_to` parameter is required ..."}}
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        text = f"Postal API {body.get('status')}"
        if data.get("code"):
            text += f" {data['code']}"
        if data.get("message"):
            text += f": {data['message']}"
        raise AnymailRequestsAPIError(
            text, email_message=message, payload=payload, response=response, backend=self
        )

    def _dump_api_request(self, response: requests.Response) -> None:
        blank_echoed_key(response)
        shown = copy.copy(response)
        shown.request = response.request.copy()
        shown.request.headers[API_KEY_HEADER] = REDACTED
        super()._dump_api_request(shown)

    def parse_recipient_status(
        self, response: requests.Response, payload: PostalPayload, message: EmailMessage
    ) -> dict[str, AnymailRecipientStatus]:
        # {"status": "success", "data": {"message_id": "...",
        #  "messages": {"to@example.com": {"id": 1234, "token": "..."}}}}
        body = self.deserialize_json_response(response, payload, message)
        try:
            messages = body["data"]["messages"]
            # Postal keys each recipient by its address as given (display name stripped).
            by_address = {
                address.lower(): str(result["id"]) for address, result in messages.items()
            }
        except (AttributeError, KeyError, TypeError) as err:
            raise AnymailRequestsAPIError(
                "Invalid Postal API response format",
                email_message=message,
                payload=payload,
                response=response,
                backend=self,
            ) from err
        statuses = {}
        for address in payload.all_recipients:
            message_id = by_address.get(address.addr_spec.lower())
            statuses[address.addr_spec] = AnymailRecipientStatus(
                message_id=message_id, status="queued" if message_id else "unknown"
            )
        return statuses


def blank_echoed_key(response: requests.Response) -> None:
    """Blank the API key Postal echoes in an InvalidServerAPIKey error.

    {"status": "error", "data": {"code": "InvalidServerAPIKey", "message": ..., "token": "<key>"}}
    """
    try:
        body = response.json()
    except ValueError:
        return
    if not isinstance(body, dict) or body.get("status") == "success":
        return  # a success's per-recipient "token"s are message tokens, not credentials
    data = body.get("data")
    if isinstance(data, dict) and data.get("token") not in (None, REDACTED):
        data["token"] = REDACTED
        # requests keeps the body here; there is no public way to replace it.
        response._content = json.dumps(body).encode("utf-8")
