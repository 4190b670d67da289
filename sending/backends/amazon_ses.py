"""Amazon SES backend: the SES API v2 through boto3's "sesv2" client.

Which SES call a message becomes (https://docs.aws.amazon.com/ses/latest/APIReference-V2/):

- SendEmail with ``Content.Raw`` for an ordinary message: the MIME that
  Django builds, so every alternative part, inline image, header and
  non-ASCII name arrives exactly as Django encodes it. (``Content.Simple``
  allows at most 15 printable-ASCII headers and no arbitrary alternatives.)
- SendEmail with ``Content.Template`` for a stored template (``template_id``).
- SendBulkEmail for a batch send (merge_data, merge_metadata or
  merge_headers): one BulkEmailEntry per "to", which SES only accepts with
  a template.

Tags and metadata travel in custom headers (one ``X-Tag`` per tag, JSON
``X-Metadata``) so tracking webhooks see them; with
AMAZON_SES_MESSAGE_TAG_NAME the (single) tag is also an SES message tag,
for filtering CloudWatch metrics and event destinations.
"""

from __future__ import annotations

import copy
import io
import re
from collections.abc import Mapping
from email.charset import QP, Charset
from email.generator import BytesGenerator
from email.header import Header
from typing import Any

from django.core.mail.message import EmailAlternative, EmailMessage

from ..exceptions import AnymailAPIError, AnymailConfigurationError, AnymailImproperlyInstalled
from ..message import AnymailRecipientStatus
from ..utils import Attachment, EmailAddress, get_anymail_setting, update_deep
from .base import AnymailBaseBackend, BasePayload

try:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError as err:
    raise AnymailImproperlyInstalled(missing_package="boto3", install_extra="amazon_ses") from err

# SES message tag names and values: "ASCII letters, numbers, underscores (_),
# or dashes (-)", "no more than 256 characters" (MessageTag in the API reference).
MESSAGE_TAG_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
# Template and bulk headers (MessageHeader): at most 15, values up to 995
# printable-ASCII characters. Raw messages carry their headers in the MIME.
MAX_TEMPLATE_HEADERS = 15
MAX_HEADER_VALUE_LENGTH = 995

# BulkEmailEntryResult.Status -> send status. Every other documented status
# (MAIL_FROM_DOMAIN_NOT_VERIFIED, TEMPLATE_NOT_FOUND, ACCOUNT_THROTTLED, ...)
# means SES did not take the message.
BULK_STATUS = {"SUCCESS": "queued", "MESSAGE_REJECTED": "rejected"}

# esp_extra names from the SES v1 calls (SendRawEmail, SendBulkTemplatedEmail)
# that the documented API showed, mapped to their v2 names.
V1_PARAM_NAMES = {
    "SourceArn": "FromEmailAddressIdentityArn",
    "ReturnPathArn": "FeedbackForwardingEmailAddressIdentityArn",
}


class AmazonSESPayload(BasePayload):
    """Maps a message to the parameters of one SES v2 send call."""

    feature_limits = {
        "tags": "all tags go in X-Tag headers; only one can also be an SES message tag",
        "merge_data": "needs a stored template (template_id)",
        "merge_metadata": "needs a stored template (template_id)",
        "merge_headers": "needs a stored template (template_id)",
        "extra_headers": "at most 15 printable-ASCII headers with a template",
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
        super().__init__(message, defaults, backend, suppressed)
        # Batch structures need every attribute, so they are built once all
        # setters have run -- still before the send is recorded, so an
        # unsupported combination never reaches SES.
        if self.is_batch() and self.template_id:
            self.operation_name, self.params = "SendBulkEmail", self.bulk_params()
        elif self.template_id:
            self.operation_name, self.params = "SendEmail", self.template_params()
        else:
            self.operation_name, self.params = "SendEmail", self.raw_params()

    def init_payload(self) -> None:
        self.from_email: EmailAddress | None = None
        self.subject: str | None = None
        self.reply_to: list[EmailAddress] = []
        self.extra_headers: dict[str, str] = {}
        self.spoofed_to: str | None = None
        self.has_body = False
        self.attachments: list[Attachment] = []
        self.envelope_sender: EmailAddress | None = None
        self.metadata: dict = {}
        self.merge_metadata: dict | None = None
        self.merge_headers: dict | None = None
        self.tags: list[str] = []
        self.tracking: dict[str, str] = {}
        self.template_id: str | None = None
        self.merge_data: dict | None = None
        self.merge_global_data: dict | None = None
        self.esp_extra: dict = {}

    # Setters: store; the *_params builders assemble.

    def set_from_email(self, email: EmailAddress) -> None:
        self.from_email = email

    def set_recipients(self, recipient_type: str, emails: list[EmailAddress]) -> None:
        pass  # read from self.recipients_by_kind (suppressed addresses left out)

    def set_subject(self, subject: str) -> None:
        self.subject = subject

    def set_reply_to(self, emails: list[EmailAddress]) -> None:
        self.reply_to = emails

    def set_extra_headers(self, headers: dict) -> None:
        self.extra_headers = {str(name): str(value) for name, value in headers.items()}

    def set_spoofed_to_header(self, header_to: str) -> None:
        self.spoofed_to = header_to  # SES sends a raw message's To header as given

    def set_text_body(self, body: str) -> None:
        self.has_body = self.has_body or bool(body)

    def set_html_body(self, body: str) -> None:
        self.has_body = self.has_body or bool(body)

    def add_alternative(self, content: str, mimetype: str) -> None:
        # Any alternative (AMP included) is part of the raw MIME
        self.has_body = self.has_body or bool(content)

    def add_attachment(self, attachment: Attachment) -> None:
        self.attachments.append(attachment)

    def set_envelope_sender(self, email: EmailAddress) -> None:
        # SES always sets the SMTP MAIL FROM itself (amazonses.com, or the
        # identity's custom MAIL FROM domain). What v2 lets a sender choose is
        # where bounces and complaints are forwarded: the part of an envelope
        # sender's job that remains.
        self.envelope_sender = email

    def set_metadata(self, metadata: dict) -> None:
        self.metadata = metadata

    def set_merge_metadata(self, merge_metadata: dict) -> None:
        self.merge_metadata = merge_metadata

    def set_merge_headers(self, merge_headers: dict) -> None:
        self.merge_headers = merge_headers

    def set_tags(self, tags: list) -> None:
        self.tags = [str(tag) for tag in tags]

    def set_track_opens(self, track_opens: bool) -> None:
        self.tracking["OpenTrackingEnabled"] = "ENABLED" if track_opens else "DISABLED"

    def set_track_clicks(self, track_clicks: bool) -> None:
        self.tracking["ClickTrackingEnabled"] = "ENABLED" if track_clicks else "DISABLED"

    def set_template_id(self, template_id: str) -> None:
        self.template_id = str(template_id)

    def set_merge_data(self, merge_data: dict) -> None:
        self.merge_data = merge_data

    def set_merge_global_data(self, merge_global_data: dict) -> None:
        self.merge_global_data = merge_global_data

    def set_esp_extra(self, extra: dict) -> None:
        self.esp_extra = extra

    # Building the call

    def raw_params(self) -> dict[str, Any]:
        if self.is_batch():
            self.unsupported_feature(
                "batch sending (merge_data, merge_metadata or merge_headers) without template_id"
            )
        if self.merge_global_data:
            self.unsupported_feature("merge_global_data without template_id")
        params = self.common_params("EmailTags")
        params["Destination"] = self.destination()
        params["Content"] = {"Raw": {"Data": self.mime_bytes()}}
        return self.merge_esp_extra(params, "EmailTags")

    def template_params(self) -> dict[str, Any]:
        params = self.common_params("EmailTags")
        params["Destination"] = self.destination()
        params["Content"] = {"Template": self.template(self.merge_global_data or {})}
        return self.merge_esp_extra(params, "EmailTags")

    def bulk_params(self) -> dict[str, Any]:
        if self.recipients_by_kind["cc"] or self.recipients_by_kind["bcc"]:
            # Each entry is a separate message: cc/bcc would get one copy per "to"
            self.unsupported_feature("cc or bcc with batch sending")
        params = self.common_params("DefaultEmailTags")
        global_data = self.merge_global_data or {}
        params["DefaultContent"] = {"Template": self.template(global_data)}

        merge_data = self.merge_data or {}
        merge_metadata = self.merge_metadata or {}
        merge_headers = self.merge_headers or {}
        entries = []
        for to in self.recipients_by_kind["to"]:
            # Whether SES falls back to DefaultTemplateData key by key isn't
            # documented: send each recipient the complete merged data.
            data = {**global_data, **merge_data.get(to.addr_spec, {})}
            entry: dict[str, Any] = {
                "Destination": {"ToAddresses": [to.address]},
                "ReplacementEmailContent": {
                    "ReplacementTemplate": {"ReplacementTemplateData": self.serialize_json(data)}
                },
            }
            # A ReplacementHeaders header replaces the template's header of that name
            replacement = list(merge_headers.get(to.addr_spec, {}).items())
            if to.addr_spec in merge_metadata:
                metadata = {**self.metadata, **merge_metadata[to.addr_spec]}
                replacement.append(("X-Metadata", self.serialize_json(metadata)))
            if replacement:
                entry["ReplacementHeaders"] = self.template_headers(replacement)
            entries.append(entry)
        params["BulkEmailEntries"] = entries
        return self.merge_esp_extra(params, "DefaultEmailTags")

    def common_params(self, tags_param: str) -> dict[str, Any]:
        params: dict[str, Any] = {"FromEmailAddress": self.from_email.address}
        if self.envelope_sender is not None:
            params["FeedbackForwardingEmailAddress"] = self.envelope_sender.addr_spec
        if self.backend.configuration_set_name:
            params["ConfigurationSetName"] = self.backend.configuration_set_name
        if self.tracking:
            params["ConfigurationOverrides"] = {"Tracking": dict(self.tracking)}
        if self.reply_to and self.template_id:
            # SES builds a templated message's headers (a raw one has Reply-To already)
            params["ReplyToAddresses"] = [email.address for email in self.reply_to]
        email_tags = self.email_tags()
        if email_tags:
            params[tags_param] = email_tags
        return params

    def destination(self) -> dict[str, list[str]]:
        destination = {}
        for kind, param in (("to", "ToAddresses"), ("cc", "CcAddresses"), ("bcc", "BccAddresses")):
            if self.recipients_by_kind[kind]:
                destination[param] = [email.address for email in self.recipients_by_kind[kind]]
        return destination

    def email_tags(self) -> list[dict[str, str]]:
        """The SES message tag copied from the message's tag (AMAZON_SES_MESSAGE_TAG_NAME)."""
        tag_name = self.backend.message_tag_name
        if not tag_name or not self.tags:
            return []
        if len(self.tags) > 1:
            self.unsupported_feature("multiple tags with the AMAZON_SES_MESSAGE_TAG_NAME setting")
        value = self.tags[0]
        if not MESSAGE_TAG_RE.match(value):
            # SES would answer "Invalid tag value <...>: only alphanumeric
            # ASCII characters, '_', and '-' are allowed."
            self.unsupported_feature(
                f"tag {value!r} as an SES message tag (only ASCII letters, digits, "
                "'_' and '-', at most 256 characters)"
            )
            return []
        return [{"Name": tag_name, "Value": value}]

    def tracking_headers(self, metadata: dict) -> list[tuple[str, str]]:
        headers = [("X-Tag", tag) for tag in self.tags]
        if metadata:
            headers.append(("X-Metadata", self.serialize_json(metadata)))
        return headers

    def template(self, template_data: dict) -> dict[str, Any]:
        """The Content.Template of a SendEmail, or DefaultContent.Template of a SendBulkEmail."""
        if self.subject:
            self.unsupported_feature("overriding the template's subject")
        if self.has_body:
            self.unsupported_feature("overriding the template's body")
        if self.spoofed_to is not None:
            self.unsupported_feature("spoofing `To` header with a template")
        key = "TemplateArn" if self.template_id.startswith("arn:") else "TemplateName"
        template: dict[str, Any] = {
            key: self.template_id,
            "TemplateData": self.serialize_json(template_data),
        }
        headers = self.template_headers(
            list(self.extra_headers.items()) + self.tracking_headers(self.metadata)
        )
        if headers:
            template["Headers"] = headers
        if self.attachments:
            template["Attachments"] = [self.template_attachment(a) for a in self.attachments]
        return template

    def template_headers(self, headers: list[tuple[str, str]]) -> list[dict[str, str]]:
        if len(headers) > MAX_TEMPLATE_HEADERS:
            self.unsupported_feature(
                f"more than {MAX_TEMPLATE_HEADERS} headers with a template "
                f"(extra_headers, X-Tag and X-Metadata make {len(headers)})"
            )
            headers = headers[:MAX_TEMPLATE_HEADERS]
        result = []
        for name, value in headers:
            value = str(value)
            if not value.isascii():
                # RFC 2047 encoded-words; adjacent words may be separated by a space
                value = Header(value, "utf-8").encode(linesep="")
            if len(value) > MAX_HEADER_VALUE_LENGTH:
                self.unsupported_feature(
                    f"header {name} longer than {MAX_HEADER_VALUE_LENGTH} characters "
                    "with a template"
                )
                continue
            result.append({"Name": name, "Value": value})
        return result

    @staticmethod
    def template_attachment(attachment: Attachment) -> dict[str, Any]:
        result = {
            "RawContent": attachment.content,
            "FileName": attachment.name or "",
            "ContentType": attachment.mimetype,
            "ContentDisposition": "INLINE" if attachment.inline else "ATTACHMENT",
        }
        if attachment.inline and attachment.cid:
            result["ContentId"] = attachment.cid
        return result

    def mime_bytes(self) -> bytes:
        """The message as Django would send it, with mailhub's effective values."""
        # Render a copy, so send defaults, a From/Reply-To header override and
        # suppressed recipients show in the headers just as in the envelope.
        source = copy.copy(self.message)
        source.from_email = self.from_email.address
        source.to = [email.address for email in self.recipients_by_kind["to"]]
        source.cc = [email.address for email in self.recipients_by_kind["cc"]]
        source.bcc = []  # envelope only (Destination)
        source.reply_to = [email.address for email in self.reply_to]
        source.subject = self.subject or ""
        source.extra_headers = dict(self.extra_headers)
        if self.spoofed_to is not None:
            source.extra_headers["To"] = self.spoofed_to
        source.body = self.effective.get("body") or ""
        if hasattr(source, "alternatives"):
            source.alternatives = [
                EmailAlternative(content, mimetype)
                for content, mimetype in self.effective.get("alternatives") or []
            ]
        source.attachments = list(self.effective.get("attachments") or [])
        mime = source.message()
        for name, value in self.tracking_headers(self.metadata):
            mime[name] = value  # adds a header (several X-Tag are allowed)
        self.encode_8bit_parts(mime)
        # RFC 5322 line endings. Through a generator, because Django 5.2's and
        # 6.1's message objects take different as_bytes() arguments.
        buffer = io.BytesIO()
        policy = mime.policy.clone(linesep="\r\n")
        BytesGenerator(buffer, mangle_from_=False, policy=policy).flatten(mime)
        return buffer.getvalue()

    @staticmethod
    def encode_8bit_parts(mime: Any) -> None:
        """Re-encode 8bit text parts as quoted-printable.

        Django sends non-ASCII text as 8bit; SES asks that content "outside
        of the 7-bit ASCII character range" be encoded, and its open and
        click tracking can garble 8bit bodies.
        """
        charset = Charset("utf-8")
        charset.body_encoding = QP
        for part in mime.walk():
            if part.is_multipart() or part.get_content_maintype() != "text":
                continue
            if (part.get("Content-Transfer-Encoding") or "").lower() != "8bit":
                continue
            text = part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
            del part["Content-Transfer-Encoding"]
            part.set_payload(text, charset=charset)

    def merge_esp_extra(self, params: dict[str, Any], tags_param: str) -> dict[str, Any]:
        """Deep-merge esp_extra into params; its message tags add to the generated one."""
        extra = dict(self.esp_extra)
        for v1_name, v2_name in V1_PARAM_NAMES.items():
            if v1_name in extra:
                extra[v2_name] = extra.pop(v1_name)
        if "Tags" in extra:
            extra[tags_param] = extra.pop("Tags")
        extra_tags = extra.pop(tags_param, None)
        update_deep(params, extra)
        if extra_tags:
            params[tags_param] = params.get(tags_param, []) + list(extra_tags)
        return params


class EmailBackend(AnymailBaseBackend):
    """Sends through Amazon SES (API v2), with boto3's credential chain."""

    esp_name = "Amazon SES"
    payload_class = AmazonSESPayload
    optional_settings = (
        "CONFIGURATION_SET_NAME",
        "MESSAGE_TAG_NAME",
        "SESSION_PARAMS",
        "CLIENT_PARAMS",
    )

    def __init__(self, **kwargs: Any) -> None:
        prefix = self.esp_setting_prefix
        self.session_params = dict(
            get_anymail_setting("session_params", esp_name=prefix, kwargs=kwargs, default={})
        )
        self.client_params = dict(
            get_anymail_setting("client_params", esp_name=prefix, kwargs=kwargs, default={})
        )
        config = self.client_params.get("config")
        if isinstance(config, Mapping):
            try:
                self.client_params["config"] = Config(**config)
            except TypeError as err:
                raise AnymailConfigurationError(
                    f"Invalid 'config' in {prefix}_CLIENT_PARAMS: {err}"
                ) from err
        self.configuration_set_name = get_anymail_setting(
            "configuration_set_name", esp_name=prefix, kwargs=kwargs, default=None
        )
        self.message_tag_name = get_anymail_setting(
            "message_tag_name", esp_name=prefix, kwargs=kwargs, default=None
        )
        if self.message_tag_name is not None and not MESSAGE_TAG_RE.match(self.message_tag_name):
            raise AnymailConfigurationError(
                f"{prefix}_MESSAGE_TAG_NAME {self.message_tag_name!r} is not a valid SES message "
                "tag name (only ASCII letters, digits, '_' and '-', at most 256 characters)."
            )
        super().__init__(**kwargs)
        self.client: Any = None

    def open(self) -> bool:
        if self.client is not None:
            return False
        try:
            session = boto3.session.Session(**self.session_params)
            self.client = session.client("sesv2", **self.client_params)
        except BotoCoreError as err:  # NoRegionError, ProfileNotFound, ...
            prefix = self.esp_setting_prefix
            raise AnymailConfigurationError(
                f"Could not create the Amazon SES client ({err}). Check {prefix}_SESSION_PARAMS, "
                f"{prefix}_CLIENT_PARAMS and your AWS configuration."
            ) from err
        return True

    def close(self) -> None:
        if self.client is None:
            return
        try:
            self.client.close()
        finally:
            self.client = None

    def post_to_esp(self, payload: AmazonSESPayload, message: EmailMessage) -> dict:
        operation = payload.operation_name
        send = (
            self.client.send_bulk_email if operation == "SendBulkEmail" else self.client.send_email
        )
        try:
            return send(**payload.params)
        except ClientError as err:
            error = err.response.get("Error", {})
            raise AnymailAPIError(
                f"Amazon SES {operation} error {error.get('Code')}: {error.get('Message')}",
                email_message=message,
                payload=payload,
                backend=self,
                status_code=err.response.get("ResponseMetadata", {}).get("HTTPStatusCode"),
            ) from err
        except BotoCoreError as err:  # connection errors, timeouts, invalid parameters
            raise AnymailAPIError(
                f"Error calling Amazon SES {operation}: {err}",
                email_message=message,
                payload=payload,
                backend=self,
            ) from err

    def parse_recipient_status(
        self, response: dict, payload: AmazonSESPayload, message: EmailMessage
    ) -> dict[str, AnymailRecipientStatus]:
        try:
            if payload.operation_name == "SendBulkEmail":
                return self.parse_bulk_status(response["BulkEmailEntryResults"], payload, message)
            message_id = response["MessageId"]
        except (KeyError, TypeError) as err:
            raise AnymailAPIError(
                f"Unexpected Amazon SES {payload.operation_name} response: {response!r}",
                email_message=message,
                payload=payload,
                backend=self,
            ) from err
        # One id for the whole message: events match it by (id, address)
        return {
            email.addr_spec: AnymailRecipientStatus(message_id=message_id, status="queued")
            for email in payload.all_recipients
        }

    def parse_bulk_status(
        self, results: list[dict], payload: AmazonSESPayload, message: EmailMessage
    ) -> dict[str, AnymailRecipientStatus]:
        to_emails = payload.recipients_by_kind["to"]
        if len(results) != len(to_emails):
            raise AnymailAPIError(
                f"Amazon SES SendBulkEmail returned {len(results)} results "
                f"for {len(to_emails)} entries",
                email_message=message,
                payload=payload,
                backend=self,
            )
        status = {
            email.addr_spec: AnymailRecipientStatus(
                message_id=result.get("MessageId"),
                status=BULK_STATUS.get(result.get("Status"), "failed"),
            )
            for email, result in zip(to_emails, results, strict=True)
        }
        statuses = {recipient.status for recipient in status.values()}
        if "queued" not in statuses and "failed" in statuses:
            # Nothing was sent and not for the recipients' sake: report SES's reasons
            errors = "; ".join(
                f"{email.addr_spec}: {result.get('Status')} {result.get('Error') or ''}".strip()
                for email, result in zip(to_emails, results, strict=True)
            )
            raise AnymailAPIError(
                f"Amazon SES SendBulkEmail sent no messages: {errors}",
                email_message=message,
                payload=payload,
                backend=self,
            )
        for email in payload.recipients_by_kind["cc"] + payload.recipients_by_kind["bcc"]:
            # Left out of a batch send (IGNORE_UNSUPPORTED_FEATURES)
            status[email.addr_spec] = AnymailRecipientStatus(message_id=None, status="failed")
        return status
