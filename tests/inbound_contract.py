"""Contract tests every ESP's inbound webhook runs (subclass InboundWebhookContract).

A subclass says how its ESP delivers a given raw MIME message (raw, or as
parsed fields built from it) and how to sign the request; the contract then
checks what the shared inbound pipeline promises.

    class TestMailgunInboundContract(InboundWebhookContract):
        esp = "mailgun"
        def inbound_body(self, raw, envelope_sender, envelope_recipient): ...
"""

from __future__ import annotations

import base64
from email.message import EmailMessage
from email.policy import SMTP

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse

from inbound.models import InboundMessage
from sending.signals import inbound
from tracking.models import WebhookCall, WebhookCallStatus

WEBHOOK_SECRET = "username:password"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def basic_auth(secret: str = WEBHOOK_SECRET) -> str:
    return "Basic " + base64.b64encode(secret.encode()).decode()


def sample_mime(
    subject: str = "Invoice question",
    attachment_name: str = "invoice.pdf",
    attachment: bytes = b"%PDF-1.4 fake",
    charset: str = "utf-8",
) -> bytes:
    """A multipart message: text + html with an inline image, and an attachment."""
    msg = EmailMessage()
    msg["From"] = "Ann Customer <ann@example.com>"
    msg["To"] = "support@inbound.example.com"
    msg["Cc"] = "Bob <bob@example.com>"
    msg["Subject"] = subject
    msg["Date"] = "Fri, 20 Nov 2026 12:00:00 +0000"
    msg["Message-ID"] = "<inbound-1@mail.example.com>"
    msg.set_content("Hello, where is my invoice?\n", charset=charset)
    msg.add_alternative('<p>Hello, <img src="cid:logo@example.com"></p>', subtype="html")
    html = msg.get_payload()[1]
    html.add_related(
        PNG,
        maintype="image",
        subtype="png",
        cid="<logo@example.com>",
        filename="logo.png",
        disposition="inline",
    )
    msg.add_attachment(attachment, maintype="application", subtype="pdf", filename=attachment_name)
    return msg.as_bytes(policy=SMTP)


def latin1_mime() -> bytes:
    return (
        b"From: =?iso-8859-1?q?Ren=E9?= <rene@example.com>\r\n"
        b"To: support@inbound.example.com\r\n"
        b"Subject: =?iso-8859-1?q?Caf=E9_cr=E8me?=\r\n"
        b"Message-ID: <latin1@example.com>\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n"
        b"Un caf\xe9, s'il vous pla\xeet.\r\n"
    )


def broken_mime() -> bytes:
    return (
        b"From: broken@example.com\r\nTo: support@inbound.example.com\r\nSubject: broken\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain; charset=x-no-such-charset\r\n\r\nabc\xff\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="x.bin"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\nnot*valid*base64!!\r\n--b--\r\n"
    )


@pytest.mark.django_db
class InboundWebhookContract:
    #: The ESP key ("mailgun"); the URL name is "<esp>_inbound_webhook".
    esp: str = ""
    envelope_sender = "bounces+ann@example.com"
    envelope_recipient = "support@inbound.example.com"
    #: False for ESPs that deliver parsed fields, not the raw message: the
    #: stored raw MIME is then rebuilt from the fields (checks adapt).
    delivers_raw_mime: bool = True

    # Hooks

    def inbound_body(
        self, raw: bytes, envelope_sender: str, envelope_recipient: str
    ) -> tuple[bytes, str]:
        """Render raw as this ESP's inbound webhook body; return (body, content type)."""
        raise NotImplementedError

    def signature_headers(self, body: bytes, content_type: str) -> dict[str, str]:
        return {}

    # Helpers

    @pytest.fixture(autouse=True)
    def webhook_settings(self, settings):
        settings.ANYMAIL = {**getattr(settings, "ANYMAIL", {}), "WEBHOOK_SECRET": WEBHOOK_SECRET}
        self.settings = settings

    @property
    def url(self) -> str:
        return reverse(f"{self.esp}_inbound_webhook")

    def post_raw(self, client, raw: bytes, auth: str | None = None, **extra):
        body, content_type = self.inbound_body(raw, self.envelope_sender, self.envelope_recipient)
        return self.post(client, body, content_type, auth=auth, **extra)

    def post(self, client, body: bytes, content_type: str, auth: str | None = None, **extra):
        headers = {
            "HTTP_AUTHORIZATION": auth or basic_auth(),
            **self.signature_headers(body, content_type),
        }
        headers.update(extra)
        return client.generic("POST", self.url, body, content_type=content_type, **headers)

    # The contract

    def test_inbound_contract_message_is_stored_with_attachments(self, client):
        received = []

        def receiver(sender, event, esp_name, **kwargs):
            received.append(event)

        inbound.connect(receiver, weak=False)
        try:
            response = self.post_raw(client, sample_mime())
        finally:
            inbound.disconnect(receiver)
        assert response.status_code == 200, response.content
        stored = InboundMessage.objects.get()
        assert stored.esp == self.esp
        assert stored.subject == "Invoice question"
        assert stored.from_address == "ann@example.com"
        assert "where is my invoice" in stored.text
        assert 'src="cid:logo@example.com"' in stored.html
        assert stored.envelope_recipient == self.envelope_recipient
        by_name = {a.filename: a for a in stored.attachments.all()}
        assert set(by_name) == {"logo.png", "invoice.pdf"}
        assert by_name["logo.png"].inline and by_name["logo.png"].content_id == "<logo@example.com>"
        with default_storage.open(by_name["invoice.pdf"].file.name) as file:
            assert file.read() == b"%PDF-1.4 fake"
        assert stored.webhook_call.status == WebhookCallStatus.PROCESSED
        (event,) = received
        assert event.event_type == "inbound"
        assert event.message.subject == "Invoice question"

    def test_inbound_contract_missing_auth_is_refused(self, client):
        body, content_type = self.inbound_body(
            sample_mime(), self.envelope_sender, self.envelope_recipient
        )
        headers = self.signature_headers(body, content_type)
        response = client.generic("POST", self.url, body, content_type=content_type, **headers)
        assert response.status_code == 401
        assert not WebhookCall.objects.exists()

    def test_inbound_contract_wrong_auth_is_refused(self, client):
        response = self.post_raw(client, sample_mime(), auth=basic_auth("username:wrong"))
        assert response.status_code == 401
        assert not InboundMessage.objects.exists()

    def test_inbound_contract_repeated_delivery_stores_once(self, client):
        raw = sample_mime()
        assert self.post_raw(client, raw).status_code == 200
        assert self.post_raw(client, raw).status_code == 200
        assert InboundMessage.objects.count() == 1
        assert InboundMessage.objects.get().attachments.count() == 2

    def test_inbound_contract_oversized_body_is_413(self, client):
        self.settings.MAILHUB = {**self.settings.MAILHUB, "INBOUND_MAX_BODY_BYTES": 200}
        response = self.post_raw(client, sample_mime())
        assert response.status_code == 413
        assert "INBOUND_MAX_BODY_BYTES" in response.json()["error"]
        assert not InboundMessage.objects.exists()

    def test_inbound_contract_oversized_attachment_is_413(self, client):
        self.settings.MAILHUB = {**self.settings.MAILHUB, "INBOUND_MAX_ATTACHMENT_BYTES": 1000}
        response = self.post_raw(client, sample_mime(attachment=b"x" * 5000))
        assert response.status_code == 413
        assert "INBOUND_MAX_ATTACHMENT_BYTES" in response.json()["error"]
        assert not InboundMessage.objects.exists()

    def test_inbound_contract_hostile_filename_never_becomes_a_path(self, client):
        response = self.post_raw(client, sample_mime(attachment_name="../../etc/passwd\x07.pdf"))
        assert response.status_code == 200
        attachment = InboundMessage.objects.get().attachments.get(inline=False)
        assert "/" not in attachment.filename and ".." not in attachment.filename
        assert "\x07" not in attachment.filename
        assert attachment.filename.endswith(".pdf")
        assert attachment.file.name.startswith("mailhub/inbound/attachments/")

    def test_inbound_contract_non_utf8_message_is_decoded(self, client):
        response = self.post_raw(client, latin1_mime())
        assert response.status_code == 200
        stored = InboundMessage.objects.get()
        assert stored.subject == "Café crème"
        assert "Un café, s'il vous plaît." in stored.text

    def test_inbound_contract_broken_mime_is_stored_with_parse_error(self, client):
        response = self.post_raw(client, broken_mime())
        assert response.status_code == 200
        stored = InboundMessage.objects.get()
        assert stored.subject == "broken"
        if self.delivers_raw_mime:
            assert "Base64" in stored.parse_error
            with default_storage.open(stored.raw_file.name) as file:
                assert file.read() == broken_mime()

    def test_inbound_contract_malformed_payload_is_400_and_kept(self, client):
        body, content_type = self.inbound_body(
            sample_mime(), self.envelope_sender, self.envelope_recipient
        )
        broken = body[: len(body) // 3]
        response = self.post(client, broken, content_type)
        assert response.status_code == 400
        assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED
        assert not InboundMessage.objects.exists()

    def test_inbound_contract_empty_body_is_400(self, client):
        _, content_type = self.inbound_body(
            sample_mime(), self.envelope_sender, self.envelope_recipient
        )
        assert self.post(client, b"", content_type).status_code == 400
