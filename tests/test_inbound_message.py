"""AnymailInboundMessage: the documented API over Python's email package."""

from datetime import UTC, datetime

from inbound.message import AnymailInboundMessage
from tests.inbound_contract import PNG, latin1_mime, sample_mime


def test_parsed_message_exposes_documented_attributes():
    message = AnymailInboundMessage.parse_raw_mime_bytes(sample_mime())
    assert str(message.from_email) == "Ann Customer <ann@example.com>"
    assert message.from_email.addr_spec == "ann@example.com"
    assert [a.addr_spec for a in message.to] == ["support@inbound.example.com"]
    assert [(a.display_name, a.addr_spec) for a in message.cc] == [("Bob", "bob@example.com")]
    assert message.subject == "Invoice question"
    assert message.date == datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    assert message.text == "Hello, where is my invoice?\r\n"  # as sent (SMTP line endings)
    assert 'src="cid:logo@example.com"' in message.html
    (attachment,) = message.attachments
    assert attachment.get_filename() == "invoice.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content_bytes() == b"%PDF-1.4 fake"
    assert attachment.is_attachment() and not attachment.is_inline()
    logo = message.inline_attachments["logo@example.com"]
    assert message.content_id_map["logo@example.com"] is not None
    assert logo.get_content_bytes() == PNG and logo.is_inline_attachment()
    assert message["message-id"] == "<inbound-1@mail.example.com>"
    assert message.get_all("To") == ["support@inbound.example.com"]


def test_non_utf8_headers_and_body_are_decoded():
    message = AnymailInboundMessage.parse_raw_mime_bytes(latin1_mime())
    assert message.subject == "Café crème"
    assert message.from_email.display_name == "René"
    assert message.text == "Un café, s'il vous plaît.\r\n"


def test_rfc2231_filename_is_decoded():
    raw = (
        b'From: x@example.com\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Disposition: attachment; filename*=UTF-8''%E2%82%AC%20rates.txt\r\n\r\n"
        b"x\r\n--b--\r\n"
    )
    (attachment,) = AnymailInboundMessage.parse_raw_mime_bytes(raw).attachments
    assert attachment.get_filename() == "€ rates.txt"


def test_missing_and_invalid_headers_are_none_or_empty():
    message = AnymailInboundMessage.parse_raw_mime_bytes(b"Date: not a date\r\n\r\nbody\r\n")
    assert message.from_email is None
    assert message.to == [] and message.cc == []
    assert message.subject is None
    assert message.date is None
    assert message.html is None


def test_unknown_charset_falls_back_with_replacement():
    raw = b"Content-Type: text/plain; charset=x-no-such\r\n\r\nabc\xff\r\n"
    assert AnymailInboundMessage.parse_raw_mime_bytes(raw).text == "abc\ufffd\r\n"


def test_construct_builds_a_message_for_tests():
    attachment = AnymailInboundMessage.construct_attachment(
        "text/csv", "a,b\n1,2\n", filename="data.csv"
    )
    message = AnymailInboundMessage.construct(
        from_email="from@example.com",
        to="to@example.com",
        subject="Constructed",
        text="plain",
        html="<b>html</b>",
        attachments=[attachment],
    )
    assert (message.subject, message.text, message.html) == (
        "Constructed",
        "plain\n",
        "<b>html</b>\n",
    )
    (parsed,) = AnymailInboundMessage.parse_raw_mime_bytes(message.as_bytes()).attachments
    assert parsed.get_content_text() == "a,b\n1,2\n"
    assert parsed.as_uploaded_file().name == "data.csv"


def test_envelope_and_spam_attributes_default_to_none():
    message = AnymailInboundMessage()
    assert message.envelope_sender is None and message.envelope_recipient is None
    assert message.spam_detected is None and message.spam_score is None
    assert message.stripped_text is None and message.stripped_html is None


def test_construct_lone_non_ascii_body_serializes():
    for body in ({"text": "Un café, s'il vous plaît.\n"}, {"html": "<p>Crème brûlée</p>\n"}):
        message = AnymailInboundMessage.construct(from_email="from@example.com", **body)
        parsed = AnymailInboundMessage.parse_raw_mime_bytes(message.as_bytes())
        assert not parsed.is_multipart()
        assert (parsed.text, parsed.html) == (body.get("text"), body.get("html"))


def test_construct_gives_multiparts_content_derived_boundaries():
    def build(html: str) -> bytes:
        attachment = AnymailInboundMessage.construct_attachment(
            "application/pdf", b"%PDF", filename="a.pdf"
        )
        return AnymailInboundMessage.construct(
            text="plain", html=html, attachments=[attachment]
        ).as_bytes()

    assert build("<b>html</b>") == build("<b>html</b>")  # nested multipart/alternative too
    assert b"boundary=" in build("<b>html</b>")
    assert build("<b>html</b>") != build("<b>other</b>")


def test_construct_takes_headers_as_a_dict_of_values_or_lists():
    message = AnymailInboundMessage.construct(
        headers={
            "Received": ["from a.example\r\n by b.example", "from c.example"],
            "X-Folded": "first part\r\n\tsecond part",
            "X-Stray": "line\nbreak",
            "Not a header name": "skipped",
            "X-None": None,
        },
        text="x",
    )
    assert message.get_all("Received") == ["from a.example by b.example", "from c.example"]
    assert message["X-Folded"] == "first part\tsecond part"
    assert message["X-Stray"] == "line break"
    assert "Not a header name" not in message and "X-None" not in message


def test_construct_named_headers_stand_in_when_headers_lack_them():
    message = AnymailInboundMessage.construct(
        headers=[("Reply-To", "kept@example.com"), ("Date", "Fri, 20 Nov 2026 12:00:00 +0000")],
        to=["a@example.com", "", "B <b@example.com>"],
        bcc="audit@example.com",
        reply_to=["ignored@example.com"],
        date="Sat, 21 Nov 2026 12:00:00 +0000",
        message_id="<id@example.com>",
        in_reply_to="<earlier@example.com>",
        text="x",
    )
    assert message["To"] == "a@example.com, B <b@example.com>"
    assert message["Bcc"] == "audit@example.com"
    assert message.get_all("Reply-To") == ["kept@example.com"]
    assert message.date == datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    assert message["Message-ID"] == "<id@example.com>"
    assert message["In-Reply-To"] == "<earlier@example.com>"
