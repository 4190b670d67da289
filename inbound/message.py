"""AnymailInboundMessage: a received email, on Python's email package (modern policy).

Everything in it came from outside: never trust filenames, content types
or HTML. Header values are decoded (RFC 2047), filenames too (RFC 2231),
and bodies in any charset Python knows; an unknown or wrong charset falls
back to replacement characters rather than failing.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from email import message_from_string
from email.feedparser import BytesFeedParser
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import parsedate_to_datetime, unquote
from typing import Any, BinaryIO

from django.core.files.uploadedfile import SimpleUploadedFile

from sending.utils import EmailAddress, parse_address_list

PARSE_CHUNK_BYTES = 64 * 1024
# RFC 5322 field names: printable ASCII except the colon.
HEADER_NAME = re.compile(r"[!-9;-~]+")

#: Headers for construct(): (name, value) pairs, or {name: value or [values]}.
HeaderItems = Iterable[tuple[str, Any]] | Mapping[str, Any]
#: An address header's value, or its addresses as a list.
Addresses = str | Iterable[str] | None


class AnymailInboundMessage(EmailMessage):
    """A received email: Python's EmailMessage plus the documented conveniences."""

    def __init__(self, policy: Any = default_policy) -> None:
        super().__init__(policy=policy)
        self.envelope_sender: str | None = None
        self.envelope_recipient: str | None = None
        self.spam_detected: bool | None = None
        self.spam_score: float | None = None
        self.stripped_text: str | None = None
        self.stripped_html: str | None = None

    # Parsing

    @classmethod
    def parse_raw_mime(cls, s: str) -> AnymailInboundMessage:
        """Parse a complete RFC 5322 message given as text."""
        return message_from_string(s, _class=cls, policy=default_policy)

    @classmethod
    def parse_raw_mime_bytes(cls, b: bytes) -> AnymailInboundMessage:
        """Parse a complete RFC 5322 message given as bytes."""
        return cls.parse_raw_mime_file(io.BytesIO(b))

    @classmethod
    def parse_raw_mime_file(cls, fp: BinaryIO) -> AnymailInboundMessage:
        """Parse a complete RFC 5322 message from a binary file.

        Fed to the parser in chunks: decoding the whole message to one str
        first (as message_from_bytes does) peaks at several times its size,
        and reading through a text wrapper would rewrite CRLF line endings.
        """
        parser = BytesFeedParser(_factory=cls, policy=default_policy)
        while chunk := fp.read(PARSE_CHUNK_BYTES):
            parser.feed(chunk)
        return parser.close()

    @classmethod
    def construct(
        cls,
        raw_headers: str | None = None,
        from_email: str | None = None,
        to: Addresses = None,
        cc: Addresses = None,
        subject: str | None = None,
        headers: HeaderItems | None = None,
        text: str | None = None,
        text_charset: str = "utf-8",
        html: str | None = None,
        html_charset: str = "utf-8",
        attachments: Iterable[EmailMessage] | None = None,
        *,
        bcc: Addresses = None,
        reply_to: Addresses = None,
        date: str | None = None,
        message_id: str | None = None,
        in_reply_to: str | None = None,
    ) -> AnymailInboundMessage:
        """Build a message from parts (for ESPs that post parsed fields, and for tests).

        raw_headers, if given, are parsed as the message's headers. headers
        are added next: (name, value) pairs, or a {name: value or [values]}
        dict (a list is a header that appears more than once); folded values
        are unfolded, and names that aren't RFC 5322 field names are skipped.
        The named header arguments (from_email ... in_reply_to) are added
        last, each only when the headers don't have it; to, cc, bcc and
        reply_to may be lists of addresses.

        attachments are MIME parts, e.g. from construct_attachment(). A lone
        body is the message's own content; multiparts get boundaries derived
        from their content, so the same parts always give the same bytes.
        """
        if raw_headers is not None:
            msg = cls.parse_raw_mime(raw_headers.rstrip("\r\n") + "\n\n")
            msg.set_payload(None)
        else:
            msg = cls()
        for name, value in header_items(headers or ()):
            msg[name] = value
        for name, value in (
            ("From", from_email),
            ("To", _address_list(to)),
            ("Cc", _address_list(cc)),
            ("Bcc", _address_list(bcc)),
            ("Reply-To", _address_list(reply_to)),
            ("Subject", subject),
            ("Date", date),
            ("Message-ID", message_id),
            ("In-Reply-To", in_reply_to),
        ):
            if value is not None and name not in msg:
                msg[name] = _unfold(str(value))

        bodies = [
            (subtype, content, charset)
            for subtype, content, charset in (
                ("plain", text, text_charset),
                ("html", html, html_charset),
            )
            if content is not None
        ]
        attachments = list(attachments or [])

        # Keep any structural headers out of the way: the parts decide them.
        for name in ("Content-Type", "Content-Transfer-Encoding", "MIME-Version"):
            del msg[name]
        msg["MIME-Version"] = "1.0"
        if len(bodies) == 1 and not attachments:
            subtype, content, charset = bodies[0]
            msg.set_content(content, subtype=subtype, charset=charset)
        elif bodies or attachments:
            parts = [_text_part(*body) for body in bodies]
            if len(parts) > 1 and attachments:
                alternative = cls()
                alternative.set_type("multipart/alternative")
                del alternative["MIME-Version"]
                for part in parts:
                    alternative.attach(part)
                parts = [alternative]
            msg.set_type("multipart/mixed" if attachments else "multipart/alternative")
            for part in [*parts, *attachments]:
                msg.attach(part)
        _set_stable_boundaries(msg)
        return msg

    @classmethod
    def construct_attachment(
        cls,
        content_type: str,
        content: bytes | str,
        charset: str | None = None,
        filename: str | None = None,
        content_id: str | None = None,
        inline: bool = False,
    ) -> AnymailInboundMessage:
        """Build an attachment part (bytes are base64-encoded; str is text)."""
        part = cls()
        maintype, _, subtype = content_type.partition("/")
        if isinstance(content, str):
            part.set_content(content, subtype=subtype or "plain", charset=charset or "utf-8")
            if maintype != "text":
                part.set_type(content_type)
        else:
            part.set_content(
                content, maintype=maintype or "application", subtype=subtype or "octet-stream"
            )
        del part["Content-Disposition"]
        disposition = "inline" if inline else "attachment"
        if filename:
            part.add_header("Content-Disposition", disposition, filename=filename)
        else:
            part.add_header("Content-Disposition", disposition)
        if content_id:
            cid = content_id if content_id.startswith("<") else f"<{content_id}>"
            part["Content-ID"] = cid
        return part

    # Addresses and headers

    def get_address_header(self, header: str) -> list[EmailAddress]:
        """Parsed addresses from every header named header; [] if missing or invalid."""
        values = [str(value) for value in (self.get_all(header) or [])]
        if not values:
            return []
        try:
            return parse_address_list(values)
        except ValueError:
            return []

    def get_date_header(self, header: str) -> datetime | None:
        """The header parsed as a datetime, or None if missing or invalid."""
        value = self.get(header)
        if value is None:
            return None
        try:
            return parsedate_to_datetime(str(value))
        except (TypeError, ValueError, IndexError):
            return None

    @property
    def from_email(self) -> EmailAddress | None:
        addresses = self.get_address_header("From")
        return addresses[0] if len(addresses) == 1 else None

    @property
    def to(self) -> list[EmailAddress]:
        return self.get_address_header("To")

    @property
    def cc(self) -> list[EmailAddress]:
        return self.get_address_header("Cc")

    @property
    def subject(self) -> str | None:
        value = self.get("Subject")
        return None if value is None else str(value)

    @property
    def date(self) -> datetime | None:
        return self.get_date_header("Date")

    # Bodies and attachments

    @property
    def text(self) -> str | None:
        return self._get_body_text("text/plain")

    @property
    def html(self) -> str | None:
        return self._get_body_text("text/html")

    def _get_body_text(self, content_type: str) -> str | None:
        for part in self.walk():
            if part.get_content_type() == content_type and not part.is_attachment():
                return part.get_content_text()
        return None

    @property
    def attachments(self) -> list[AnymailInboundMessage]:
        """Every non-inline attachment."""
        return [part for part in self.walk() if part.is_attachment()]

    @property
    def inline_attachments(self) -> dict[str, AnymailInboundMessage]:
        """Inline parts by Content-ID (without angle brackets)."""
        return self.content_id_map

    @property
    def content_id_map(self) -> dict[str, AnymailInboundMessage]:
        """Inline parts by Content-ID (without angle brackets): for cid: references."""
        found = {}
        for part in self.walk():
            if part.is_inline_attachment() and part["Content-ID"]:
                found[unquote(str(part["Content-ID"]).strip())] = part
        return found

    def is_attachment(self) -> bool:
        return self.get_content_disposition() == "attachment"

    def is_inline_attachment(self) -> bool:
        """An inline part that isn't the message body: an image referenced by cid:, usually."""
        if self.get_content_disposition() == "inline":
            return True
        # A part with a Content-ID and no disposition inside multipart/related
        return (
            self.get_content_disposition() is None
            and "Content-ID" in self
            and not self.is_multipart()
            and self.get_content_maintype() != "text"
        )

    is_inline = is_inline_attachment

    def get_content_bytes(self) -> bytes:
        """The decoded content (base64 and quoted-printable undone)."""
        payload = self.get_payload(decode=True)
        if payload is None:  # a multipart or message/rfc822 part
            return self.as_bytes()
        return payload

    def get_content_text(self, charset: str | None = None, errors: str = "replace") -> str:
        """The content decoded to text, in the declared (or given) charset."""
        content = self.get_content_bytes()
        charset = charset or self.get_content_charset() or "utf-8"
        try:
            return content.decode(charset, errors=errors)
        except LookupError:  # a charset Python doesn't know
            return content.decode("utf-8", errors=errors)

    def as_uploaded_file(self) -> SimpleUploadedFile:
        """The attachment as a Django UploadedFile (for a FileField)."""
        return SimpleUploadedFile(
            self.get_filename() or "attachment",
            self.get_content_bytes(),
            self.get_content_type(),
        )


def _unfold(value: str) -> str:
    """A header value on one line: RFC 5322 2.2.3 unfolding.

    Python refuses line breaks in header values, so any left over (not
    followed by whitespace, so not folding) become spaces.
    """
    return re.sub(r"[\r\n]+", " ", re.sub(r"\r?\n(?=[ \t])", "", value))


def header_items(headers: HeaderItems) -> Iterator[tuple[str, str]]:
    """(name, value) pairs as construct() adds them: unfolded, and only RFC 5322 field names."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    for name, values in items:
        name = str(name)
        if not HEADER_NAME.fullmatch(name):
            continue  # not a header name (it stays in the ESP's payload)
        for value in values if isinstance(values, list) else [values]:
            if value is not None:
                yield name, _unfold(str(value))


def _address_list(addresses: Addresses) -> str | None:
    if addresses is None or isinstance(addresses, str):
        return addresses
    return ", ".join(str(address) for address in addresses if address) or None


def _text_part(subtype: str, content: str, charset: str) -> AnymailInboundMessage:
    part = AnymailInboundMessage()
    part.set_content(content, subtype=subtype, charset=charset)
    del part["MIME-Version"]
    return part


def _set_stable_boundaries(part: EmailMessage) -> None:
    """Give each multipart a boundary derived from its content, innermost first.

    A message rebuilt from an ESP's parsed fields then serializes to the
    same bytes every time, so a retried or reprocessed delivery is
    recognized as one already stored.
    """
    if not part.is_multipart():
        return
    children = part.get_payload()
    for child in children:
        _set_stable_boundaries(child)
    digest = hashlib.sha256(b"".join(child.as_bytes() for child in children)).hexdigest()
    part.set_boundary(f"=_mailhub_{digest[:40]}")
