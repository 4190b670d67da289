"""The Postal backend: the exact send/message and send/raw requests, responses and errors."""

import base64
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default as default_policy

import pytest
import requests
import responses
from django.core import mail
from django.core.mail import EmailMessage, EmailMultiAlternatives

from sending import services
from sending.exceptions import (
    AnymailAPIError,
    AnymailConfigurationError,
    AnymailUnsupportedFeature,
)
from sending.message import AnymailMessage
from sending.models import Message
from tests.conftest import make_backend
from tests.helpers import assert_recorded, request_json

pytestmark = pytest.mark.django_db

BACKEND = "sending.backends.postal.EmailBackend"
API_URL = "https://postal.example.com"
SEND_URL = "https://postal.example.com/api/v1/send/message"
RAW_URL = "https://postal.example.com/api/v1/send/raw"
API_KEY = "fake-postal-server-key"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR fake"


def success(messages: dict[str, int]) -> dict:
    """Postal's answer to a send: one message (id and token) per recipient."""
    return {
        "status": "success",
        "time": 0.13,
        "flags": {},
        "data": {
            "message_id": "0e3a1c8f-31b1-4d0b-9b1f-8b1f1a1f2c3d@rp.postal.example.com",
            "messages": {
                address: {"id": message_id, "token": f"tok{message_id}"}
                for address, message_id in messages.items()
            },
        },
    }


def error(code: str, message: str | None = None, **extra) -> dict:
    """Postal's error shape, which it answers with HTTP 200."""
    data = {"code": code, **extra}
    if message is not None:
        data["message"] = message
    return {"status": "error", "time": 0.01, "flags": {}, "data": data}


@pytest.fixture
def postal_settings(settings, use_backend):
    settings.ANYMAIL = {"POSTAL_API_KEY": API_KEY, "POSTAL_API_URL": API_URL}
    use_backend(BACKEND)
    return settings


@pytest.fixture
def accepted(http):
    http.add(responses.POST, SEND_URL, json=success({"to@example.com": 1001}))
    return http


def sent_body(http) -> dict:
    assert len(http.calls) == 1
    return request_json(http.calls[0])


def sent_mime(http):
    """The MIME message of a send/raw request, parsed."""
    return message_from_bytes(base64.b64decode(sent_body(http)["data"]), policy=default_policy)


def make_message(**kwargs) -> AnymailMessage:
    defaults = {
        "subject": "Subject",
        "body": "Text body",
        "from_email": "from@example.com",
        "to": ["to@example.com"],
    }
    return AnymailMessage(**{**defaults, **kwargs})


# The structured API (send/message)


def test_send_mail_posts_json_with_the_server_key_header(postal_settings, accepted):
    mail.send_mail("Subject", "Text body", "from@example.com", ["to@example.com"])

    request = accepted.calls[0].request
    assert request.method == "POST"
    assert request.url == SEND_URL
    assert request.headers["X-Server-API-Key"] == API_KEY
    assert request.headers["Content-Type"] == "application/json"
    assert sent_body(accepted) == {
        "from": "from@example.com",
        "to": ["to@example.com"],
        "subject": "Subject",
        "plain_body": "Text body",
    }


def test_each_recipient_gets_its_postal_message_id(postal_settings, http):
    http.add(
        responses.POST,
        SEND_URL,
        json=success({"to@example.com": 1001, "cc@example.com": 1002, "bcc@example.com": 1003}),
    )
    message = make_message(cc=["cc@example.com"], bcc=["bcc@example.com"])
    message.send()

    recipients = message.anymail_status.recipients
    assert {addr: (r.status, r.message_id) for addr, r in recipients.items()} == {
        "to@example.com": ("queued", "1001"),
        "cc@example.com": ("queued", "1002"),
        "bcc@example.com": ("queued", "1003"),
    }
    assert message.anymail_status.message_id == {"1001", "1002", "1003"}
    assert_recorded(
        status="sent",
        esp="postal",
        recipients={
            "to@example.com": ("queued", "1001"),
            "cc@example.com": ("queued", "1002"),
            "bcc@example.com": ("queued", "1003"),
        },
    )


def test_recipients_match_postals_keys_whatever_their_case(postal_settings, http):
    # Postal keys recipients by the address as given, display name stripped
    http.add(responses.POST, SEND_URL, json=success({"Alice@Example.com": 7}))
    message = make_message(to=["Alice <Alice@Example.com>"])
    message.send()

    assert sent_body(http)["to"] == ["Alice <Alice@Example.com>"]
    assert message.anymail_status.recipients["Alice@Example.com"].message_id == "7"
    assert_recorded(status="sent", esp="postal", recipients={"alice@example.com": ("queued", "7")})


def test_recipient_missing_from_the_response_is_unknown(postal_settings, accepted):
    message = make_message(cc=["cc@example.com"])
    message.send()

    cc_status = message.anymail_status.recipients["cc@example.com"]
    assert (cc_status.status, cc_status.message_id) == ("unknown", None)


def test_full_featured_structured_message(postal_settings, accepted):
    message = AnymailMessage(
        subject="Your order",
        body="Text body",
        from_email='"Shop, Inc." <shop@example.com>',
        to=["Alice <to@example.com>"],
        cc=["cc@example.com"],
        bcc=["bcc@example.com"],
        reply_to=["Help <help@example.com>", "sales@example.com"],
        headers={"X-Order": "1234", "List-Unsubscribe": "<mailto:unsub@example.com>"},
        tags=["receipt"],
        envelope_sender="Bounces <bounces@example.com>",
        esp_extra={"bounce": False},
    )
    message.attach_alternative("<p>HTML body</p>", "text/html")
    message.attach("receipt.pdf", b"%PDF-1.4 fake", "application/pdf")
    message.send()

    assert sent_body(accepted) == {
        "from": '"Shop, Inc." <shop@example.com>',
        "to": ["Alice <to@example.com>"],
        "cc": ["cc@example.com"],
        "bcc": ["bcc@example.com"],
        "subject": "Your order",
        "reply_to": "Help <help@example.com>, sales@example.com",
        "headers": {"X-Order": "1234", "List-Unsubscribe": "<mailto:unsub@example.com>"},
        "plain_body": "Text body",
        "html_body": "<p>HTML body</p>",
        "attachments": [
            {
                "name": "receipt.pdf",
                "content_type": "application/pdf",
                "data": "JVBERi0xLjQgZmFrZQ==",
            }
        ],
        "sender": "Bounces <bounces@example.com>",
        "tag": "receipt",
        "bounce": False,
    }


def test_html_only_message_sends_only_html_body(postal_settings, accepted):
    message = EmailMessage("Subject", "<p>Hi</p>", "from@example.com", ["to@example.com"])
    message.content_subtype = "html"
    message.send()

    body = sent_body(accepted)
    assert body["html_body"] == "<p>Hi</p>"
    assert "plain_body" not in body


def test_suppressed_recipient_is_left_out_of_the_request(postal_settings, accepted):
    services.suppression_add(address="cc@example.com", reason="complained")
    make_message(cc=["cc@example.com"]).send()

    assert "cc" not in sent_body(accepted)
    assert_recorded(
        status="sent",
        esp="postal",
        recipients={"to@example.com": ("queued", "1001"), "cc@example.com": ("suppressed", "")},
    )


# The raw API (send/raw)


def test_inline_image_is_sent_as_raw_mime(postal_settings, http):
    http.add(
        responses.POST,
        RAW_URL,
        json=success({"to@example.com": 11, "cc@example.com": 12, "bcc@example.com": 13}),
    )
    message = AnymailMessage(
        subject="Your order",
        body="Text body",
        from_email="Shop <shop@example.com>",
        to=["Alice <to@example.com>"],
        cc=["cc@example.com"],
        bcc=["bcc@example.com"],
        reply_to=["help@example.com"],
        headers={"X-Order": "1234"},
        tags=["receipt"],
    )
    cid = message.attach_inline_image(PNG, filename="logo.png")
    message.attach_alternative(f'<p>HTML <img src="cid:{cid}"></p>', "text/html")
    message.attach("receipt.pdf", b"%PDF-1.4 fake", "application/pdf")
    message.send()

    request = http.calls[0].request
    assert request.url == RAW_URL
    assert request.headers["X-Server-API-Key"] == API_KEY
    body = sent_body(http)
    assert set(body) == {"mail_from", "rcpt_to", "data"}
    assert body["mail_from"] == "shop@example.com"
    assert body["rcpt_to"] == ["to@example.com", "cc@example.com", "bcc@example.com"]

    mime = sent_mime(http)
    assert mime["From"] == "Shop <shop@example.com>"
    assert mime["To"] == "Alice <to@example.com>"
    assert mime["Cc"] == "cc@example.com"
    assert mime["Bcc"] is None  # bcc is envelope-only
    assert mime["Subject"] == "Your order"
    assert mime["Reply-To"] == "help@example.com"
    assert mime["X-Order"] == "1234"
    assert mime["X-Postal-Tag"] == "receipt"
    assert mime["Date"] is not None
    assert mime["Message-ID"].endswith("@example.com>")

    assert mime.get_content_type() == "multipart/mixed"
    alternative, attachment = mime.get_payload()
    assert alternative.get_content_type() == "multipart/alternative"
    text, related = alternative.get_payload()
    assert text.get_content() == "Text body\r\n"
    assert related.get_content_type() == "multipart/related"
    html, image = related.get_payload()
    assert html.get_content() == f'<p>HTML <img src="cid:{cid}"></p>\r\n'
    assert image.get_content_type() == "image/png"
    assert image["Content-ID"] == f"<{cid}>"
    assert image.get_content_disposition() == "inline"
    assert image.get_content() == PNG
    assert attachment.get_filename() == "receipt.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content() == b"%PDF-1.4 fake"

    assert_recorded(
        status="sent",
        esp="postal",
        recipients={
            "to@example.com": ("queued", "11"),
            "cc@example.com": ("queued", "12"),
            "bcc@example.com": ("queued", "13"),
        },
    )


def test_amp_body_goes_raw_between_text_and_html(postal_settings, http):
    http.add(responses.POST, RAW_URL, json=success({"to@example.com": 1}))
    message = EmailMultiAlternatives("Subject", "Text", "from@example.com", ["to@example.com"])
    message.attach_alternative("<p>HTML</p>", "text/html")
    message.attach_alternative("<html amp4email>AMP</html>", "text/x-amp-html")
    message.send()

    mime = sent_mime(http)
    assert mime.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in mime.get_payload()] == [
        "text/plain",
        "text/x-amp-html",
        "text/html",
    ]
    assert mime.get_payload()[1].get_content() == "<html amp4email>AMP</html>\r\n"


def test_inline_image_without_html_is_an_inline_part(postal_settings, http):
    http.add(responses.POST, RAW_URL, json=success({"to@example.com": 1}))
    message = make_message()
    cid = message.attach_inline_image(PNG, filename="logo.png")
    message.send()

    mime = sent_mime(http)
    assert mime.get_content_type() == "multipart/mixed"
    text, image = mime.get_payload()
    assert text.get_content_type() == "text/plain"
    assert image["Content-ID"] == f"<{cid}>"
    assert image.get_content_disposition() == "inline"


def test_calendar_alternative_goes_raw(postal_settings, http):
    http.add(responses.POST, RAW_URL, json=success({"to@example.com": 1}))
    message = EmailMultiAlternatives("Invite", "Text", "from@example.com", ["to@example.com"])
    message.attach_alternative("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", "text/calendar")
    message.send()

    parts = sent_mime(http).get_payload()
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/calendar"]


def test_esp_extra_send_raw_forces_the_raw_api(postal_settings, http):
    http.add(responses.POST, RAW_URL, json=success({"to@example.com": 1}))
    make_message(esp_extra={"send_raw": True, "bounce": True}).send()

    body = sent_body(http)
    assert body["bounce"] is True
    assert "send_raw" not in body
    mime = sent_mime(http)
    assert mime.get_content_type() == "text/plain"
    assert mime.get_content() == "Text body\r\n"
    assert mime["Subject"] == "Subject"


def test_raw_envelope_sender_is_mail_from_and_sender_header(postal_settings, http):
    http.add(responses.POST, RAW_URL, json=success({"to@example.com": 1}))
    make_message(envelope_sender="bounces@example.com", esp_extra={"send_raw": True}).send()

    assert sent_body(http)["mail_from"] == "bounces@example.com"
    assert sent_mime(http)["Sender"] == "bounces@example.com"


def test_raw_message_keeps_a_given_message_id(postal_settings, http):
    http.add(responses.POST, RAW_URL, json=success({"to@example.com": 1}))
    make_message(headers={"Message-ID": "<mine@example.com>"}, esp_extra={"send_raw": True}).send()

    assert sent_mime(http).get_all("Message-ID") == ["<mine@example.com>"]


# Unsupported features


def test_multiple_tags_are_unsupported(postal_settings, http):
    with pytest.raises(AnymailUnsupportedFeature, match="multiple tags"):
        make_message(tags=["one", "two"]).send()
    assert len(http.calls) == 0


def test_ignored_multiple_tags_send_the_first(postal_settings, accepted):
    postal_settings.ANYMAIL = {**postal_settings.ANYMAIL, "IGNORE_UNSUPPORTED_FEATURES": True}
    make_message(tags=["one", "two"]).send()

    assert sent_body(accepted)["tag"] == "one"


@pytest.mark.parametrize(
    ("attrs", "feature"),
    [
        ({"metadata": {"order": "1"}}, "metadata"),
        ({"send_at": datetime(2030, 1, 1, tzinfo=UTC)}, "send_at"),
        ({"track_opens": True}, "track_opens"),
        ({"track_clicks": True}, "track_clicks"),
        ({"template_id": "welcome"}, "template_id"),
        ({"merge_data": {"to@example.com": {"name": "A"}}}, "merge_data"),
        ({"merge_global_data": {"site": "x"}}, "merge_global_data"),
        ({"merge_metadata": {"to@example.com": {"k": "1"}}}, "merge_metadata"),
        ({"merge_headers": {"to@example.com": {"X-H": "1"}}}, "merge_headers"),
    ],
)
def test_features_postal_lacks_are_unsupported(postal_settings, http, attrs, feature):
    with pytest.raises(AnymailUnsupportedFeature, match=f"Postal does not support {feature}"):
        make_message(**attrs).send()
    assert len(http.calls) == 0


def test_ignored_unsupported_features_are_left_out(postal_settings, accepted):
    postal_settings.ANYMAIL = {**postal_settings.ANYMAIL, "IGNORE_UNSUPPORTED_FEATURES": True}
    make_message(metadata={"order": "1"}, track_opens=True).send()

    assert sent_body(accepted) == {
        "from": "from@example.com",
        "to": ["to@example.com"],
        "subject": "Subject",
        "plain_body": "Text body",
    }


# Settings


def test_missing_api_key_names_the_setting(settings):
    settings.ANYMAIL = {"POSTAL_API_URL": API_URL}
    with pytest.raises(AnymailConfigurationError, match=r"POSTAL_API_KEY"):
        make_backend(BACKEND)


def test_missing_api_url_names_the_setting(settings):
    settings.ANYMAIL = {"POSTAL_API_KEY": API_KEY}
    with pytest.raises(AnymailConfigurationError, match=r"POSTAL_API_URL"):
        make_backend(BACKEND)


def test_bare_postal_api_key_setting_is_accepted(settings, use_backend, accepted):
    settings.ANYMAIL = {"POSTAL_API_URL": API_URL}
    settings.POSTAL_API_KEY = "bare-fake-postal-key"
    use_backend(BACKEND)
    make_message().send()

    assert accepted.calls[0].request.headers["X-Server-API-Key"] == "bare-fake-postal-key"


def test_api_url_with_a_path_prefix(postal_settings, http):
    url = "https://mail.example.com/postal/api/v1/send/message"
    http.add(responses.POST, url, json=success({"to@example.com": 1}))
    postal_settings.ANYMAIL = {
        **postal_settings.ANYMAIL,
        "POSTAL_API_URL": "https://mail.example.com/postal/",
    }
    make_message().send()

    assert http.calls[0].request.url == url


# Errors (Postal answers HTTP 200 and says what went wrong in the body)


def test_invalid_server_key_raises_and_is_recorded_without_the_key(postal_settings, http):
    http.add(
        responses.POST,
        SEND_URL,
        json=error(
            "InvalidServerAPIKey",
            "The API token provided in X-Server-API-Key was not valid.",
            token=API_KEY,
        ),
    )
    with pytest.raises(AnymailAPIError) as excinfo:
        make_message().send()

    error_text = str(excinfo.value)
    assert isinstance(excinfo.value, requests.HTTPError)
    assert excinfo.value.status_code == 200
    assert "Postal API error InvalidServerAPIKey: The API token provided in X-Server-API-Key" in (
        error_text
    )
    assert API_KEY not in error_text
    record = assert_recorded(
        status="failed",
        esp="postal",
        error_contains="The API token provided in X-Server-API-Key was not valid.",
        recipients={"to@example.com": ("failed", "")},
    )
    assert API_KEY not in record.error


def test_missing_server_key_raises_access_denied(postal_settings, http):
    http.add(
        responses.POST, SEND_URL, json=error("AccessDenied", "Must be authenticated as a server.")
    )
    with pytest.raises(AnymailAPIError, match="AccessDenied: Must be authenticated as a server"):
        make_message().send()


def test_unauthenticated_from_address_raises_with_postals_message(postal_settings, http):
    http.add(
        responses.POST,
        SEND_URL,
        json=error(
            "UnauthenticatedFromAddress",
            "The From address is not authorised to send mail from this server",
        ),
    )
    with pytest.raises(AnymailAPIError) as excinfo:
        make_message().send()

    assert "UnauthenticatedFromAddress" in str(excinfo.value)
    assert_recorded(
        status="failed",
        esp="postal",
        error_contains="The From address is not authorised to send mail from this server",
    )


def test_parameter_error_raises_with_postals_message(postal_settings, http):
    http.add(
        responses.POST,
        RAW_URL,
        json={
            "status": "parameter-error",
            "time": 0.0,
            "flags": {},
            "data": {"message": "`mail_from` parameter is required but is missing"},
        },
    )
    with pytest.raises(AnymailAPIError) as excinfo:
        make_message(esp_extra={"send_raw": True}).send()

    assert "Postal API parameter-error: `mail_from` parameter is required" in str(excinfo.value)
    assert_recorded(status="failed", esp="postal", error_contains="`mail_from` parameter")


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failure_from_a_proxy_raises(postal_settings, http, status):
    http.add(responses.POST, SEND_URL, status=status, body="<html>Forbidden</html>")
    with pytest.raises(AnymailAPIError) as excinfo:
        make_message().send()

    assert excinfo.value.status_code == status
    assert_recorded(status="failed", esp="postal", error_contains="Forbidden")


def test_rate_limit_raises_with_status_429(postal_settings, http):
    http.add(responses.POST, SEND_URL, status=429, body="Too Many Requests")
    with pytest.raises(AnymailAPIError) as excinfo:
        make_message().send()

    assert excinfo.value.status_code == 429
    assert_recorded(status="failed", esp="postal", error_contains="Too Many Requests")


@pytest.mark.parametrize("status", [500, 502])
def test_server_error_raises_and_is_recorded(postal_settings, http, status):
    http.add(responses.POST, SEND_URL, status=status, body="<html>Bad Gateway</html>")
    with pytest.raises(AnymailAPIError) as excinfo:
        make_message().send()

    assert excinfo.value.status_code == status
    assert_recorded(status="failed", esp="postal", error_contains="Bad Gateway")


def test_non_json_success_body_raises(postal_settings, http):
    http.add(responses.POST, SEND_URL, status=200, body="<html>Welcome to nginx</html>")
    with pytest.raises(AnymailAPIError, match="Invalid JSON in Postal API response"):
        make_message().send()

    assert_recorded(status="failed", esp="postal", error_contains="Invalid JSON")


def test_success_without_messages_raises(postal_settings, http):
    http.add(responses.POST, SEND_URL, json={"status": "success", "data": {}})
    with pytest.raises(AnymailAPIError, match="Invalid Postal API response format"):
        make_message().send()


@pytest.mark.parametrize(
    "problem", [requests.ConnectionError("connection refused"), requests.Timeout("read timed out")]
)
def test_connection_problems_raise_api_error_naming_the_url(postal_settings, http, problem):
    http.add(responses.POST, SEND_URL, body=problem)
    with pytest.raises(AnymailAPIError) as excinfo:
        make_message().send()

    assert excinfo.value.__cause__ is problem
    assert SEND_URL in str(excinfo.value)
    assert API_KEY not in str(excinfo.value)
    assert_recorded(status="failed", esp="postal", error_contains=str(problem))


# The API key stays secret


def test_debug_output_hides_the_server_key(postal_settings, accepted, capsys):
    postal_settings.ANYMAIL = {**postal_settings.ANYMAIL, "DEBUG_API_REQUESTS": True}
    make_message().send()

    output = capsys.readouterr().out
    assert "POST " + SEND_URL in output
    assert "X-Server-API-Key: ********" in output
    assert API_KEY not in output
    # the request that was sent is untouched
    assert accepted.calls[0].request.headers["X-Server-API-Key"] == API_KEY


def test_debug_output_hides_an_echoed_key(postal_settings, http, capsys):
    postal_settings.ANYMAIL = {**postal_settings.ANYMAIL, "DEBUG_API_REQUESTS": True}
    http.add(
        responses.POST,
        SEND_URL,
        json=error("InvalidServerAPIKey", "The API token was not valid.", token=API_KEY),
    )
    with pytest.raises(AnymailAPIError):
        make_message().send()

    output = capsys.readouterr().out
    assert "InvalidServerAPIKey" in output
    assert API_KEY not in output


# Recording switched off


def test_no_store_sends_without_touching_the_database(
    postal_settings, no_store, accepted, django_assert_num_queries
):
    message = make_message()
    with django_assert_num_queries(0):
        message.send()

    assert message.anymail_status.status == {"queued"}
    assert Message.objects.count() == 0
