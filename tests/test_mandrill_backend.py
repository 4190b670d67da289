"""The Mandrill backend: the exact messages/send request, its responses and errors."""

import base64
from datetime import UTC, datetime, timedelta, timezone
from email.mime.application import MIMEApplication

import pytest
import requests
import responses
from django.core import mail
from django.core.mail import EmailMessage, EmailMultiAlternatives

from sending import services
from sending.exceptions import (
    AnymailAPIError,
    AnymailConfigurationError,
    AnymailRecipientsRefused,
    AnymailSerializationError,
    AnymailUnsupportedFeature,
)
from sending.message import AnymailMessage
from sending.models import Message
from tests.conftest import make_backend
from tests.helpers import assert_recorded, request_json

pytestmark = pytest.mark.django_db

BACKEND = "sending.backends.mandrill.EmailBackend"
API_URL = "https://mandrillapp.com/api/1.0/"
SEND_URL = API_URL + "messages/send"
TEMPLATE_URL = API_URL + "messages/send-template"
API_KEY = "md-fake-test-key"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR fake"

# The shape Mandrill documents for errors, which it answers with HTTP 500.
INVALID_KEY_ERROR = {
    "status": "error",
    "code": -1,
    "name": "Invalid_Key",
    "message": "Invalid API key",
}
VALIDATION_ERROR = {
    "status": "error",
    "code": -2,
    "name": "ValidationError",
    "message": 'Validation error: {"message":{"to":[{"email":"Please enter a valid email"}]}}',
}


def sent(email, status="sent", _id="abc123abc123abc123abc123abc123", reject_reason=None):
    """One recipient's result, as Mandrill answers it."""
    return {"email": email, "status": status, "_id": _id, "reject_reason": reject_reason}


@pytest.fixture
def mandrill_settings(settings, use_backend):
    settings.ANYMAIL = {"MANDRILL_API_KEY": API_KEY}
    use_backend(BACKEND)
    return settings


@pytest.fixture
def accepted(http):
    """Mandrill sends to to@example.com."""
    http.add(responses.POST, SEND_URL, json=[sent("to@example.com")])
    return http


def inline_pdf() -> MIMEApplication:
    part = MIMEApplication(b"%PDF-1.4", "pdf")
    part.add_header("Content-Disposition", "inline", filename="doc.pdf")
    part.add_header("Content-ID", "<doc@inline>")
    return part


def sent_body(http) -> dict:
    assert len(http.calls) == 1
    return request_json(http.calls[0])


def make_message(**kwargs) -> AnymailMessage:
    defaults = {
        "subject": "Subject",
        "body": "Text body",
        "from_email": "from@example.com",
        "to": ["to@example.com"],
    }
    return AnymailMessage(**{**defaults, **kwargs})


# The request


def test_send_mail_posts_json_with_the_key_in_the_body(mandrill_settings, accepted):
    mail.send_mail("Subject", "Text body", "from@example.com", ["to@example.com"])

    request = accepted.calls[0].request
    assert request.method == "POST"
    assert request.url == SEND_URL
    assert request.headers["Content-Type"] == "application/json"
    assert "Authorization" not in request.headers
    assert sent_body(accepted) == {
        "key": API_KEY,
        "message": {
            "from_email": "from@example.com",
            "to": [{"email": "to@example.com", "type": "to"}],
            "subject": "Subject",
            "text": "Text body",
        },
    }


def test_success_status_comes_from_each_recipients_result(mandrill_settings, http):
    http.add(
        responses.POST,
        SEND_URL,
        json=[
            sent("to@example.com", "sent", "id-to"),
            sent("queued@example.com", "queued", "id-queued"),
            sent("later@example.com", "scheduled", "id-later"),
            sent("bounced@example.com", "rejected", "id-rejected", "hard-bounce"),
            sent("bad@example.com", "invalid", "id-invalid"),
        ],
    )
    message = make_message(
        to=["to@example.com", "queued@example.com", "later@example.com"],
        cc=["bounced@example.com"],
        bcc=["bad@example.com"],
    )
    message.send()

    recipients = message.anymail_status.recipients
    assert {addr: (r.status, r.message_id) for addr, r in recipients.items()} == {
        "to@example.com": ("sent", "id-to"),
        "queued@example.com": ("queued", "id-queued"),
        "later@example.com": ("queued", "id-later"),
        "bounced@example.com": ("rejected", "id-rejected"),
        "bad@example.com": ("invalid", "id-invalid"),
    }
    assert message.anymail_status.status == {"sent", "queued", "rejected", "invalid"}


def test_success_is_recorded_per_recipient(mandrill_settings, http):
    http.add(
        responses.POST,
        SEND_URL,
        json=[sent("to@example.com", "sent", "id-1"), sent("cc@example.com", "queued", "id-2")],
    )
    make_message(to=["To@Example.com"], cc=["cc@example.com"]).send()

    assert_recorded(
        status="sent",
        esp="mandrill",
        recipients={"to@example.com": ("sent", "id-1"), "cc@example.com": ("queued", "id-2")},
    )


def test_recipient_missing_from_the_response_is_unknown(mandrill_settings, http):
    http.add(responses.POST, SEND_URL, json=[sent("to@example.com", "sent", "id-1")])
    message = make_message(cc=["cc@example.com"])
    message.send()

    cc_status = message.anymail_status.recipients["cc@example.com"]
    assert (cc_status.status, cc_status.message_id) == ("unknown", None)


def test_every_recipient_refused_raises_and_is_recorded_rejected(mandrill_settings, http):
    http.add(
        responses.POST,
        SEND_URL,
        json=[sent("to@example.com", "rejected", "id-1", "unsub")],
    )
    with pytest.raises(AnymailRecipientsRefused):
        make_message().send()

    assert_recorded(
        status="rejected", esp="mandrill", recipients={"to@example.com": ("rejected", "id-1")}
    )


def test_full_featured_message(mandrill_settings, accepted):
    message = AnymailMessage(
        subject="Your order",
        body="Text body",
        from_email='"Shop, Inc." <shop@example.com>',
        to=["Alice <to@example.com>"],
        cc=["cc@example.com"],
        bcc=["Audit <bcc@example.com>"],
        reply_to=["Help <help@example.com>", "sales@example.com"],
        headers={"X-Order": "1234", "List-Unsubscribe": "<mailto:unsub@example.com>"},
        tags=["receipt", "web"],
        metadata={"order_id": 1234, "customer": "c-77"},
        track_clicks=False,
        track_opens=True,
        send_at=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
        envelope_sender="bounces@mail.example.com",
        esp_extra={"ip_pool": "Main Pool", "message": {"important": True}},
    )
    message.attach_alternative("<p>HTML body</p>", "text/html")
    message.attach("receipt.pdf", b"%PDF-1.4 fake", "application/pdf")
    cid = message.attach_inline_image(PNG, filename="logo.png")
    message.send()

    assert sent_body(accepted) == {
        "key": API_KEY,
        "message": {
            "from_email": "shop@example.com",
            "from_name": "Shop, Inc.",
            "to": [
                {"email": "to@example.com", "type": "to", "name": "Alice"},
                {"email": "cc@example.com", "type": "cc"},
                {"email": "bcc@example.com", "type": "bcc", "name": "Audit"},
            ],
            "subject": "Your order",
            "headers": {
                "Reply-To": "Help <help@example.com>, sales@example.com",
                "X-Order": "1234",
                "List-Unsubscribe": "<mailto:unsub@example.com>",
            },
            "text": "Text body",
            "html": "<p>HTML body</p>",
            "attachments": [
                {
                    "type": "application/pdf",
                    "name": "receipt.pdf",
                    "content": "JVBERi0xLjQgZmFrZQ==",
                }
            ],
            "images": [
                {"type": "image/png", "name": cid, "content": base64.b64encode(PNG).decode()}
            ],
            "return_path_domain": "mail.example.com",
            "metadata": {"order_id": 1234, "customer": "c-77"},
            "tags": ["receipt", "web"],
            "track_clicks": False,
            "track_opens": True,
            "important": True,
        },
        "send_at": "2030-01-02 03:04:05",
        "ip_pool": "Main Pool",
    }


def test_send_at_is_converted_to_utc(mandrill_settings, accepted):
    tokyo = timezone(timedelta(hours=9))
    make_message(send_at=datetime(2030, 1, 2, 9, 0, 0, tzinfo=tokyo)).send()

    assert sent_body(accepted)["send_at"] == "2030-01-02 00:00:00"


def test_html_only_message_sends_only_html(mandrill_settings, accepted):
    message = EmailMessage("Subject", "<p>Hi</p>", "from@example.com", ["to@example.com"])
    message.content_subtype = "html"
    message.send()

    body = sent_body(accepted)["message"]
    assert body["html"] == "<p>Hi</p>"
    assert "text" not in body


def test_suppressed_recipient_is_left_out_of_the_request(mandrill_settings, accepted):
    services.suppression_add(address="cc@example.com", reason="bounced")
    make_message(cc=["cc@example.com"]).send()

    assert sent_body(accepted)["message"]["to"] == [{"email": "to@example.com", "type": "to"}]
    assert_recorded(
        status="sent",
        esp="mandrill",
        recipients={
            "to@example.com": ("sent", "abc123abc123abc123abc123abc123"),
            "cc@example.com": ("suppressed", ""),
        },
    )


def test_unserializable_metadata_raises_serialization_error(mandrill_settings, http):
    message = make_message(metadata={"when": object()})
    with pytest.raises(AnymailSerializationError) as excinfo:
        message.send()

    assert len(http.calls) == 0
    assert API_KEY not in str(excinfo.value)


# Templates and batch sends


def test_batch_send_has_merge_vars_and_hides_other_recipients(mandrill_settings, http):
    http.add(
        responses.POST,
        SEND_URL,
        json=[sent("alice@example.com", _id="id-a"), sent("bob@example.com", _id="id-b")],
    )
    message = make_message(
        subject="Your order *|order_no|* has shipped",
        body="Hi *|name|*, we shipped on *|ship_date|*.",
        to=["Alice <alice@example.com>", "bob@example.com"],
        merge_data={
            "alice@example.com": {"name": "Alice", "order_no": "12345"},
            "bob@example.com": {"name": "Bob", "order_no": "54321"},
        },
        merge_global_data={"ship_date": "May 15"},
        merge_metadata={"alice@example.com": {"customer": 1}, "bob@example.com": {"customer": 2}},
    )
    message.send()

    assert sent_body(http)["message"] == {
        "from_email": "from@example.com",
        "to": [
            {"email": "alice@example.com", "type": "to", "name": "Alice"},
            {"email": "bob@example.com", "type": "to"},
        ],
        "subject": "Your order *|order_no|* has shipped",
        "text": "Hi *|name|*, we shipped on *|ship_date|*.",
        "merge_vars": [
            {
                "rcpt": "alice@example.com",
                "vars": [
                    {"name": "name", "content": "Alice"},
                    {"name": "order_no", "content": "12345"},
                ],
            },
            {
                "rcpt": "bob@example.com",
                "vars": [
                    {"name": "name", "content": "Bob"},
                    {"name": "order_no", "content": "54321"},
                ],
            },
        ],
        "global_merge_vars": [{"name": "ship_date", "content": "May 15"}],
        "preserve_recipients": False,
        "recipient_metadata": [
            {"rcpt": "alice@example.com", "values": {"customer": 1}},
            {"rcpt": "bob@example.com", "values": {"customer": 2}},
        ],
    }
    assert message.anymail_status.message_id == {"id-a", "id-b"}
    assert_recorded(
        status="sent",
        esp="mandrill",
        recipients={"alice@example.com": ("sent", "id-a"), "bob@example.com": ("sent", "id-b")},
    )


def test_merge_global_data_alone_is_not_a_batch(mandrill_settings, accepted):
    make_message(merge_global_data={"site": "Example"}).send()

    message = sent_body(accepted)["message"]
    assert message["global_merge_vars"] == [{"name": "site", "content": "Example"}]
    assert "preserve_recipients" not in message


def test_stored_template_uses_send_template(mandrill_settings, http):
    http.add(responses.POST, TEMPLATE_URL, json=[sent("to@example.com", _id="id-1")])
    message = AnymailMessage(
        to=["to@example.com"],
        template_id="order-shipped",
        merge_global_data={"ship_date": "May 15"},
    )
    # None: use the template's own from address and subject
    message.from_email = None
    message.subject = None
    message.send()

    assert http.calls[0].request.url == TEMPLATE_URL
    assert sent_body(http) == {
        "key": API_KEY,
        "template_name": "order-shipped",
        "template_content": [],
        "message": {
            "to": [{"email": "to@example.com", "type": "to"}],
            "global_merge_vars": [{"name": "ship_date", "content": "May 15"}],
        },
    }
    assert message.anymail_status.message_id == "id-1"


def test_esp_extra_template_content_dict_becomes_name_content_list(mandrill_settings, http):
    http.add(responses.POST, TEMPLATE_URL, json=[sent("to@example.com")])
    make_message(
        template_id="welcome",
        esp_extra={"template_content": {"header": "<h1>Hi</h1>", "footer": "Bye"}},
    ).send()

    assert sent_body(http)["template_content"] == [
        {"name": "header", "content": "<h1>Hi</h1>"},
        {"name": "footer", "content": "Bye"},
    ]


def test_esp_extra_recipient_metadata_dict_becomes_rcpt_list(mandrill_settings, accepted):
    make_message(
        esp_extra={"message": {"recipient_metadata": {"to@example.com": {"user_id": 123}}}}
    ).send()

    assert sent_body(accepted)["message"]["recipient_metadata"] == [
        {"rcpt": "to@example.com", "values": {"user_id": 123}}
    ]


def test_esp_extra_merges_top_level_and_message_keys(mandrill_settings, accepted):
    make_message(
        track_opens=False,
        esp_extra={
            "async": True,
            "ip_pool": "Bulk Pool",
            "message": {"subaccount": "Marketing Dept.", "merge_language": "handlebars"},
        },
    ).send()

    body = sent_body(accepted)
    assert body["async"] is True
    assert body["ip_pool"] == "Bulk Pool"
    assert body["message"]["subaccount"] == "Marketing Dept."
    assert body["message"]["merge_language"] == "handlebars"
    assert body["message"]["track_opens"] is False


def test_esp_send_defaults_set_a_subaccount(mandrill_settings, accepted):
    mandrill_settings.ANYMAIL = {
        **mandrill_settings.ANYMAIL,
        "MANDRILL_SEND_DEFAULTS": {"esp_extra": {"message": {"subaccount": "Default"}}},
    }
    make_message().send()

    assert sent_body(accepted)["message"]["subaccount"] == "Default"


# Unsupported features


def test_merge_headers_are_unsupported(mandrill_settings, http):
    message = make_message(merge_headers={"to@example.com": {"X-Id": "1"}})
    with pytest.raises(AnymailUnsupportedFeature, match="merge_headers"):
        message.send()
    assert len(http.calls) == 0


def test_amp_body_is_unsupported(mandrill_settings, http):
    message = EmailMultiAlternatives("Subject", "Text", "from@example.com", ["to@example.com"])
    message.attach_alternative("<html amp4email></html>", "text/x-amp-html")
    with pytest.raises(AnymailUnsupportedFeature, match="AMP-HTML"):
        message.send()
    assert len(http.calls) == 0


def test_inline_attachment_that_is_not_an_image_is_unsupported(mandrill_settings, http):
    message = make_message()
    message.attach(inline_pdf())
    with pytest.raises(AnymailUnsupportedFeature, match="inline attachments of type"):
        message.send()
    assert len(http.calls) == 0


def test_ignored_unsupported_inline_attachment_is_attached(mandrill_settings, accepted):
    mandrill_settings.ANYMAIL = {**mandrill_settings.ANYMAIL, "IGNORE_UNSUPPORTED_FEATURES": True}
    message = make_message()
    message.attach(inline_pdf())
    message.send()

    body = sent_body(accepted)["message"]
    assert body["attachments"] == [
        {"type": "application/pdf", "name": "doc.pdf", "content": "JVBERi0xLjQ="}
    ]
    assert "images" not in body


def test_ignored_merge_headers_are_left_out(mandrill_settings, http):
    mandrill_settings.ANYMAIL = {**mandrill_settings.ANYMAIL, "IGNORE_UNSUPPORTED_FEATURES": True}
    http.add(responses.POST, SEND_URL, json=[sent("to@example.com")])
    make_message(merge_headers={"to@example.com": {"X-Id": "1"}}).send()

    # still a batch (each recipient sees only itself), just without the headers
    assert sent_body(http)["message"] == {
        "from_email": "from@example.com",
        "to": [{"email": "to@example.com", "type": "to"}],
        "subject": "Subject",
        "text": "Text body",
        "preserve_recipients": False,
    }


# Settings


def test_missing_api_key_names_the_setting(settings):
    settings.ANYMAIL = {}
    with pytest.raises(AnymailConfigurationError, match=r"MANDRILL_API_KEY"):
        make_backend(BACKEND)


def test_bare_mandrill_api_key_setting_is_accepted(settings, use_backend, accepted):
    settings.ANYMAIL = {}
    settings.MANDRILL_API_KEY = "md-bare-fake-key"
    use_backend(BACKEND)
    make_message().send()

    assert sent_body(accepted)["key"] == "md-bare-fake-key"


def test_api_url_setting_without_trailing_slash(mandrill_settings, http):
    http.add(responses.POST, "https://mandrill.test/api/1.0/messages/send", json=[])
    mandrill_settings.ANYMAIL = {
        **mandrill_settings.ANYMAIL,
        "MANDRILL_API_URL": "https://mandrill.test/api/1.0",
        "IGNORE_RECIPIENT_STATUS": True,
    }
    make_message().send()

    assert http.calls[0].request.url == "https://mandrill.test/api/1.0/messages/send"


# The API key stays secret


def test_debug_output_shows_the_request_without_the_key(mandrill_settings, accepted, capsys):
    mandrill_settings.ANYMAIL = {**mandrill_settings.ANYMAIL, "DEBUG_API_REQUESTS": True}
    make_message().send()

    output = capsys.readouterr().out
    assert "POST " + SEND_URL in output
    assert '"key": "********"' in output
    assert '"from_email": "from@example.com"' in output
    assert API_KEY not in output
    # the request that was sent is untouched
    assert sent_body(accepted)["key"] == API_KEY


def test_error_text_and_payload_data_leave_out_the_key(mandrill_settings, http):
    http.add(responses.POST, SEND_URL, status=500, json=VALIDATION_ERROR)
    with pytest.raises(AnymailAPIError) as excinfo:
        make_message().send()

    assert API_KEY not in str(excinfo.value)
    assert "key" not in excinfo.value.payload.data
    assert API_KEY not in Message.objects.get().error


# Errors


def test_invalid_key_raises_with_mandrills_message_and_is_recorded(mandrill_settings, http):
    http.add(responses.POST, SEND_URL, status=500, json=INVALID_KEY_ERROR)
    with pytest.raises(AnymailAPIError) as excinfo:
        make_message().send()

    error = excinfo.value
    assert error.status_code == 500
    assert isinstance(error, requests.HTTPError)
    assert "Invalid_Key" in str(error)
    assert "Invalid API key" in str(error)
    assert_recorded(
        status="failed",
        esp="mandrill",
        error_contains="Invalid API key",
        recipients={"to@example.com": ("failed", "")},
    )


def test_validation_error_raises_with_mandrills_message(mandrill_settings, http):
    http.add(responses.POST, SEND_URL, status=500, json=VALIDATION_ERROR)
    with pytest.raises(AnymailAPIError) as excinfo:
        make_message().send()

    assert "ValidationError" in str(excinfo.value)
    assert "Please enter a valid email" in str(excinfo.value)
    assert_recorded(status="failed", esp="mandrill", error_contains="Please enter a valid email")


def test_auth_failure_status_raises_and_is_recorded(mandrill_settings, http):
    http.add(responses.POST, SEND_URL, status=401, json=INVALID_KEY_ERROR)
    with pytest.raises(AnymailAPIError) as excinfo:
        make_message().send()

    assert excinfo.value.status_code == 401
    assert_recorded(status="failed", esp="mandrill", error_contains="Invalid API key")


def test_rate_limit_raises_with_status_429(mandrill_settings, http):
    http.add(responses.POST, SEND_URL, status=429, body="Too Many Requests")
    with pytest.raises(AnymailAPIError) as excinfo:
        make_message().send()

    assert excinfo.value.status_code == 429
    assert_recorded(status="failed", esp="mandrill", error_contains="Too Many Requests")


@pytest.mark.parametrize("status", [502, 503])
def test_server_error_raises_and_is_recorded(mandrill_settings, http, status):
    http.add(responses.POST, SEND_URL, status=status, body="<html>Service Unavailable</html>")
    with pytest.raises(AnymailAPIError) as excinfo:
        make_message().send()

    assert excinfo.value.status_code == status
    assert_recorded(status="failed", esp="mandrill", error_contains="Service Unavailable")


def test_non_json_success_body_raises(mandrill_settings, http):
    http.add(responses.POST, SEND_URL, status=200, body="<html>OK</html>")
    with pytest.raises(AnymailAPIError, match="Invalid JSON in Mandrill API response"):
        make_message().send()

    assert_recorded(status="failed", esp="mandrill", error_contains="Invalid JSON")


def test_unexpected_json_success_body_raises(mandrill_settings, http):
    http.add(responses.POST, SEND_URL, status=200, json={"status": "ok"})
    with pytest.raises(AnymailAPIError, match="Invalid Mandrill API response format"):
        make_message().send()


@pytest.mark.parametrize(
    "error", [requests.ConnectionError("connection refused"), requests.Timeout("read timed out")]
)
def test_connection_problems_raise_api_error_naming_the_url(mandrill_settings, http, error):
    http.add(responses.POST, SEND_URL, body=error)
    with pytest.raises(AnymailAPIError) as excinfo:
        make_message().send()

    assert excinfo.value.__cause__ is error
    assert SEND_URL in str(excinfo.value)
    assert API_KEY not in str(excinfo.value)
    assert_recorded(status="failed", esp="mandrill", error_contains=str(error))


# Recording switched off


def test_no_store_sends_without_touching_the_database(
    mandrill_settings, no_store, accepted, django_assert_num_queries
):
    message = make_message()
    with django_assert_num_queries(0):
        message.send()

    assert message.anymail_status.status == {"sent"}
    assert Message.objects.count() == 0
