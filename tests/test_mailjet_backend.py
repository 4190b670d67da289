"""The Mailjet backend: Send API v3.1 requests, responses and errors."""

import base64
from datetime import UTC, datetime

import pytest
import requests
import responses
from django.core import mail
from django.core.mail import EmailMessage

from sending.exceptions import (
    AnymailAPIError,
    AnymailConfigurationError,
    AnymailSerializationError,
    AnymailUnsupportedFeature,
)
from sending.message import AnymailMessage
from sending.models import Message
from tests.conftest import make_backend
from tests.helpers import assert_recorded, request_json

pytestmark = pytest.mark.django_db

BACKEND = "sending.backends.mailjet.EmailBackend"
SEND_URL = "https://api.mailjet.com/v3.1/send"
API_KEY = "test-mailjet-api-key"
SECRET_KEY = "test-mailjet-secret-key"
PNG = b"\x89PNG\r\n\x1a\nfake-image-bytes"


@pytest.fixture
def mailjet(settings, use_backend):
    settings.ANYMAIL = {"MAILJET_API_KEY": API_KEY, "MAILJET_SECRET_KEY": SECRET_KEY}
    use_backend(BACKEND)


def sent(email, message_id):
    """One recipient of an accepted message, as Mailjet reports it."""
    return {
        "Email": email,
        "MessageUUID": f"1ab23cd4-e567-8901-2345-{message_id:012d}",
        "MessageID": message_id,
        "MessageHref": f"https://api.mailjet.com/v3/REST/message/{message_id}",
    }


def success(to=(), cc=(), bcc=()):
    """One accepted entry of a Send API answer."""
    result = {"Status": "success", "CustomID": "", "To": list(to), "Cc": list(cc), "Bcc": list(bcc)}
    return result


def error(message, code, related_to, status_code=400):
    """One refused entry of a Send API answer."""
    return {
        "Status": "error",
        "Errors": [
            {
                "ErrorIdentifier": "f987008f-251a-4dff-8ffc-40f1583ad7bc",
                "ErrorCode": code,
                "StatusCode": status_code,
                "ErrorMessage": message,
                "ErrorRelatedTo": related_to,
            }
        ],
    }


def add_send_response(http, *results, status=200):
    http.add(responses.POST, SEND_URL, json={"Messages": list(results)}, status=status)


def message(**kwargs):
    fields = {
        "subject": "Subject",
        "body": "Body",
        "from_email": "from@example.com",
        "to": ["to@example.com"],
    }
    return AnymailMessage(**{**fields, **kwargs})


# Requests


def test_plain_message_is_posted_to_send_api_v31_with_basic_auth(mailjet, http):
    add_send_response(http, success(to=[sent("to@example.com", 1152921504606846)]))

    sent_count = mail.send_mail("Subject", "Body", "from@example.com", ["to@example.com"])

    assert sent_count == 1
    request = http.calls[0].request
    assert request.method == "POST"
    assert request.url == SEND_URL
    credentials = base64.b64encode(f"{API_KEY}:{SECRET_KEY}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {credentials}"
    assert request.headers["Content-Type"] == "application/json"
    assert request_json(http.calls[0]) == {
        "Messages": [
            {
                "From": {"Email": "from@example.com"},
                "To": [{"Email": "to@example.com"}],
                "Subject": "Subject",
                "TextPart": "Body",
            }
        ]
    }


def test_plain_message_is_recorded_with_mailjet_message_id(mailjet, http):
    add_send_response(http, success(to=[sent("to@example.com", 1152921504606846)]))

    msg = message()
    msg.send()

    assert msg.anymail_status.status == {"sent"}
    assert msg.anymail_status.message_id == "1152921504606846"
    assert_recorded(
        status="sent", esp="mailjet", recipients={"to@example.com": ("sent", "1152921504606846")}
    )


def test_full_featured_message(mailjet, http):
    add_send_response(
        http,
        success(
            to=[sent("ann@example.com", 101)],
            cc=[sent("cc@example.com", 102)],
            bcc=[sent("bcc@example.com", 103)],
        ),
    )
    msg = message(
        from_email='"Shop, Inc." <shop@example.com>',
        to=["Ann Ünicode <ann@example.com>"],
        cc=["cc@example.com"],
        bcc=["bcc@example.com"],
        reply_to=["Help Desk <help@example.com>"],
        headers={"X-Order": "42"},
        tags=["orders"],
        metadata={"order_id": "42", "tier": 2},
        track_opens=True,
        track_clicks=False,
        envelope_sender="bounces@example.com",
        esp_extra={"Priority": 2, "CustomID": "order-42", "SandboxMode": True},
    )
    msg.attach_alternative("<p>HTML</p>", "text/html")
    msg.attach("invoice.pdf", b"%PDF-1.4 fake", "application/pdf")
    cid = msg.attach_inline_image(PNG, filename="logo.png")

    msg.send()

    assert request_json(http.calls[0]) == {
        "Messages": [
            {
                "From": {"Email": "shop@example.com", "Name": "Shop, Inc."},
                "To": [{"Email": "ann@example.com", "Name": "Ann Ünicode"}],
                "Cc": [{"Email": "cc@example.com"}],
                "Bcc": [{"Email": "bcc@example.com"}],
                "ReplyTo": {"Email": "help@example.com", "Name": "Help Desk"},
                "Subject": "Subject",
                "TextPart": "Body",
                "HTMLPart": "<p>HTML</p>",
                "Headers": {"X-Order": "42"},
                "Attachments": [
                    {
                        "ContentType": "application/pdf",
                        "Filename": "invoice.pdf",
                        "Base64Content": base64.b64encode(b"%PDF-1.4 fake").decode(),
                    }
                ],
                "InlinedAttachments": [
                    {
                        "ContentType": "image/png",
                        "Filename": "logo.png",
                        "Base64Content": base64.b64encode(PNG).decode(),
                        "ContentID": cid,
                    }
                ],
                "CustomCampaign": "orders",
                "EventPayload": '{"order_id": "42", "tier": 2}',
                "TrackOpens": "enabled",
                "TrackClicks": "disabled",
                "Sender": {"Email": "bounces@example.com"},
                "Priority": 2,
                "CustomID": "order-42",
            }
        ],
        "SandboxMode": True,
    }


def test_each_recipient_gets_its_own_message_id(mailjet, http):
    add_send_response(
        http,
        success(
            to=[sent("to1@example.com", 201), sent("to2@example.com", 202)],
            cc=[sent("cc@example.com", 203)],
            bcc=[sent("bcc@example.com", 204)],
        ),
    )
    msg = message(
        to=["to1@example.com", "to2@example.com"], cc=["cc@example.com"], bcc=["bcc@example.com"]
    )

    msg.send()

    assert msg.anymail_status.message_id == {"201", "202", "203", "204"}
    assert_recorded(
        status="sent",
        esp="mailjet",
        recipients={
            "to1@example.com": ("sent", "201"),
            "to2@example.com": ("sent", "202"),
            "cc@example.com": ("sent", "203"),
            "bcc@example.com": ("sent", "204"),
        },
    )


def test_recipient_status_matches_addresses_whatever_their_case(mailjet, http):
    add_send_response(http, success(to=[sent("mixed@example.com", 301)]))
    msg = message(to=["Mixed@Example.com"])

    msg.send()

    assert msg.anymail_status.recipients["Mixed@Example.com"].message_id == "301"


def test_inline_image_without_filename_gets_a_generic_one(mailjet, http):
    add_send_response(http, success(to=[sent("to@example.com", 1)]))
    msg = message()
    cid = msg.attach_inline_image(PNG)

    msg.send()

    assert request_json(http.calls[0])["Messages"][0]["InlinedAttachments"] == [
        {
            "ContentType": "image/png",
            "Filename": "attachment.png",
            "Base64Content": base64.b64encode(PNG).decode(),
            "ContentID": cid,
        }
    ]


def test_html_only_message_sends_htmlpart(mailjet, http):
    add_send_response(http, success(to=[sent("to@example.com", 1)]))
    msg = EmailMessage("Subject", "<b>Hi</b>", "from@example.com", ["to@example.com"])
    msg.content_subtype = "html"

    msg.send()

    body = request_json(http.calls[0])["Messages"][0]
    assert body["HTMLPart"] == "<b>Hi</b>"
    assert "TextPart" not in body


def test_unserializable_metadata_raises_serialization_error(mailjet, http):
    msg = message(metadata={"when": datetime(2026, 1, 1, tzinfo=UTC)})

    with pytest.raises(AnymailSerializationError, match="Mailjet"):
        msg.send()
    assert len(http.calls) == 0


# Batch sending and templates


def test_batch_send_makes_one_message_per_to_recipient(mailjet, http):
    add_send_response(
        http,
        success(to=[sent("alice@example.com", 401)]),
        success(to=[sent("bob@example.com", 402)]),
    )
    msg = message(
        to=["Alice <alice@example.com>", "bob@example.com"],
        body="Hi [[var:name]], your order [[var:order]] ships [[var:ship_date]]",
        metadata={"campaign": "spring"},
        merge_data={
            "alice@example.com": {"name": "Alice", "order": "1"},
            "bob@example.com": {"name": "Bob", "order": "2"},
        },
        merge_global_data={"ship_date": "May 15", "name": "customer"},
        merge_metadata={"alice@example.com": {"customer": "A1"}},
        merge_headers={"bob@example.com": {"List-Unsubscribe": "<https://example.com/u/bob>"}},
        headers={"X-Shared": "yes"},
    )

    msg.send()

    shared = {
        "From": {"Email": "from@example.com"},
        "Subject": "Subject",
        "TextPart": "Hi [[var:name]], your order [[var:order]] ships [[var:ship_date]]",
    }
    assert request_json(http.calls[0]) == {
        "Messages": [
            {
                **shared,
                "To": [{"Email": "alice@example.com", "Name": "Alice"}],
                "Headers": {"X-Shared": "yes"},
                "Variables": {"ship_date": "May 15", "name": "Alice", "order": "1"},
                "EventPayload": '{"campaign": "spring", "customer": "A1"}',
            },
            {
                **shared,
                "To": [{"Email": "bob@example.com"}],
                "Headers": {"X-Shared": "yes", "List-Unsubscribe": "<https://example.com/u/bob>"},
                "Variables": {"ship_date": "May 15", "name": "Bob", "order": "2"},
                "EventPayload": '{"campaign": "spring"}',
            },
        ]
    }
    assert_recorded(
        status="sent",
        esp="mailjet",
        recipients={"alice@example.com": ("sent", "401"), "bob@example.com": ("sent", "402")},
    )


def test_batch_send_copies_cc_into_every_message(mailjet, http):
    add_send_response(
        http,
        success(to=[sent("alice@example.com", 501)], cc=[sent("boss@example.com", 502)]),
        success(to=[sent("bob@example.com", 503)], cc=[sent("boss@example.com", 504)]),
    )
    msg = message(
        to=["alice@example.com", "bob@example.com"],
        cc=["boss@example.com"],
        merge_data={"alice@example.com": {}, "bob@example.com": {}},
    )

    msg.send()

    messages = request_json(http.calls[0])["Messages"]
    assert [m["Cc"] for m in messages] == [[{"Email": "boss@example.com"}]] * 2
    # The cc's status carries the id of its first copy.
    assert msg.anymail_status.recipients["boss@example.com"].message_id == "502"


def test_stored_template_uses_numeric_template_id_and_template_language(mailjet, http):
    add_send_response(http, success(to=[sent("to@example.com", 601)]))
    msg = EmailMessage(to=["to@example.com"])
    msg.template_id = "176375"
    msg.from_email = None  # use the template's sender
    msg.merge_global_data = {"ship_date": "May 15"}

    msg.send()

    assert request_json(http.calls[0]) == {
        "Messages": [
            {
                "To": [{"Email": "to@example.com"}],
                "TemplateID": 176375,
                "TemplateLanguage": True,
                "Variables": {"ship_date": "May 15"},
            }
        ]
    }


def test_non_numeric_template_id_is_refused(mailjet, http):
    msg = message(template_id="welcome-email")

    with pytest.raises(AnymailUnsupportedFeature, match="numeric template ID"):
        msg.send()
    assert len(http.calls) == 0


# Unsupported features


@pytest.mark.parametrize(
    ("attrs", "feature"),
    [
        ({"send_at": datetime(2026, 5, 1, 12, tzinfo=UTC)}, "send_at"),
        ({"tags": ["one", "two"]}, "multiple tags"),
        ({"reply_to": ["a@example.com", "b@example.com"]}, "multiple reply_to addresses"),
    ],
)
def test_unsupported_feature_raises_naming_the_feature(mailjet, http, attrs, feature):
    msg = message(**attrs)

    with pytest.raises(AnymailUnsupportedFeature, match=f"Mailjet does not support {feature}"):
        msg.send()
    assert len(http.calls) == 0


def test_amp_body_is_unsupported(mailjet, http):
    msg = message()
    msg.attach_alternative("<html amp4email></html>", "text/x-amp-html")

    with pytest.raises(AnymailUnsupportedFeature, match="AMP-HTML body"):
        msg.send()


def test_ignore_unsupported_features_sends_the_first_tag(settings, mailjet, http):
    settings.ANYMAIL = {**settings.ANYMAIL, "IGNORE_UNSUPPORTED_FEATURES": True}
    add_send_response(http, success(to=[sent("to@example.com", 1)]))
    msg = message(tags=["one", "two"], send_at=datetime(2026, 5, 1, 12, tzinfo=UTC))

    msg.send()

    body = request_json(http.calls[0])["Messages"][0]
    assert body["CustomCampaign"] == "one"


# Settings


def test_missing_api_key_names_the_setting(settings):
    settings.ANYMAIL = {"MAILJET_SECRET_KEY": SECRET_KEY}

    with pytest.raises(AnymailConfigurationError, match="MAILJET_API_KEY"):
        make_backend(BACKEND)


def test_missing_secret_key_names_the_setting(settings):
    settings.ANYMAIL = {"MAILJET_API_KEY": API_KEY}

    with pytest.raises(AnymailConfigurationError, match="MAILJET_SECRET_KEY"):
        make_backend(BACKEND)


def test_keys_can_be_bare_settings(settings, http):
    settings.ANYMAIL = {}
    settings.MAILJET_API_KEY = "bare-key"
    settings.MAILJET_SECRET_KEY = "bare-secret"
    add_send_response(http, success(to=[sent("to@example.com", 1)]))

    make_backend(BACKEND).send_messages([message()])

    credentials = base64.b64encode(b"bare-key:bare-secret").decode()
    assert http.calls[0].request.headers["Authorization"] == f"Basic {credentials}"


def test_api_url_setting_overrides_the_endpoint(settings, http):
    settings.ANYMAIL = {
        "MAILJET_API_KEY": API_KEY,
        "MAILJET_SECRET_KEY": SECRET_KEY,
        "MAILJET_API_URL": "https://api.us.mailjet.com/v3.1",
    }
    http.add(
        responses.POST,
        "https://api.us.mailjet.com/v3.1/send",
        json={"Messages": [success(to=[sent("to@example.com", 1)])]},
    )

    make_backend(BACKEND).send_messages([message()])

    assert http.calls[0].request.url == "https://api.us.mailjet.com/v3.1/send"


# Errors


def test_auth_failure_raises_api_error_and_is_recorded(mailjet, http):
    http.add(
        responses.POST,
        SEND_URL,
        status=401,
        json={
            "ErrorIdentifier": "8c48c5e2-2cbb-4bcd-9a6e-a4d4e1d6e6c4",
            "StatusCode": 401,
            "ErrorMessage": "API key authentication/authorization failure. You may be "
            "unauthorized to access the API or your API key may be expired. Visit API keys "
            "management section to check your keys.",
        },
    )

    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()

    assert isinstance(excinfo.value, requests.HTTPError)
    assert excinfo.value.status_code == 401
    assert "API key authentication/authorization failure" in str(excinfo.value)
    assert SECRET_KEY not in str(excinfo.value)
    assert_recorded(
        status="failed",
        esp="mailjet",
        error_contains="API key authentication/authorization failure",
    )


def test_validation_error_raises_with_mailjets_error_text(mailjet, http):
    add_send_response(
        http,
        error('"not-an-address" is an invalid email address.', "mj-0013", ["To[0].Email"]),
        status=400,
    )

    with pytest.raises(AnymailAPIError) as excinfo:
        message(to=["to@example.com"]).send()

    assert excinfo.value.status_code == 400
    text = str(excinfo.value)
    assert (
        '"not-an-address" is an invalid email address. [mj-0013] (related to To[0].Email)' in text
    )
    assert_recorded(
        status="failed",
        esp="mailjet",
        error_contains='"not-an-address" is an invalid email address.',
    )


def test_batch_with_some_messages_refused_reports_them_per_recipient(mailjet, http):
    add_send_response(
        http,
        success(to=[sent("alice@example.com", 701)]),
        error('"bob@example" is an invalid email address.', "mj-0013", ["To[0].Email"]),
        error("The To is mandatory but missing from the input", "mj-0003", ["To"]),
        status=400,
    )
    msg = message(
        to=["alice@example.com", "bob@example", "carol@example.com"],
        merge_data={"alice@example.com": {"name": "Alice"}},
    )

    msg.send()  # no exception: Mailjet accepted part of the batch

    assert msg.anymail_status.status == {"sent", "invalid", "failed"}
    assert_recorded(
        status="sent",
        esp="mailjet",
        recipients={
            "alice@example.com": ("sent", "701"),
            "bob@example": ("invalid", ""),
            "carol@example.com": ("failed", ""),
        },
    )


def test_batch_with_every_message_refused_raises(mailjet, http):
    add_send_response(
        http,
        error('"a@example" is an invalid email address.', "mj-0013", ["To[0].Email"]),
        error('"b@example" is an invalid email address.', "mj-0013", ["To[0].Email"]),
        status=400,
    )
    msg = message(to=["a@example", "b@example"], merge_data={})

    with pytest.raises(AnymailAPIError, match='"b@example" is an invalid email address.'):
        msg.send()
    assert_recorded(status="failed", esp="mailjet", error_contains='"a@example" is an invalid')


def test_rate_limit_raises_api_error(mailjet, http):
    http.add(
        responses.POST,
        SEND_URL,
        status=429,
        json={"ErrorIdentifier": "e1", "StatusCode": 429, "ErrorMessage": "Too many requests"},
    )

    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()

    assert excinfo.value.status_code == 429
    assert "Too many requests" in str(excinfo.value)
    assert_recorded(status="failed", esp="mailjet", error_contains="Too many requests")


def test_server_error_raises_api_error(mailjet, http):
    http.add(
        responses.POST,
        SEND_URL,
        status=500,
        json={
            "ErrorIdentifier": "D4DF574C-0C5F-45C7-BA52-7AA8E533C3DE",
            "StatusCode": 500,
            "ErrorMessage": "Internal Server Error",
        },
    )

    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()

    assert excinfo.value.status_code == 500
    assert "D4DF574C-0C5F-45C7-BA52-7AA8E533C3DE" in str(excinfo.value)
    assert_recorded(status="failed", esp="mailjet", error_contains="Internal Server Error")


def test_non_json_success_body_raises_api_error(mailjet, http):
    http.add(responses.POST, SEND_URL, status=200, body="<html>Gateway says hi</html>")

    with pytest.raises(AnymailAPIError, match="Invalid JSON in Mailjet API response"):
        message().send()
    assert_recorded(status="failed", esp="mailjet", error_contains="Invalid JSON")


def test_unexpected_json_shape_raises_api_error(mailjet, http):
    http.add(responses.POST, SEND_URL, status=200, json={"Sent": []})

    with pytest.raises(AnymailAPIError, match="Invalid Mailjet API response format"):
        message().send()


@pytest.mark.parametrize(
    "failure", [requests.ConnectionError("connection refused"), requests.Timeout("read timeout")]
)
def test_network_failure_raises_api_error(mailjet, http, failure):
    http.add(responses.POST, SEND_URL, body=failure)

    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()

    assert f"Error posting to {SEND_URL}" in str(excinfo.value)
    assert isinstance(excinfo.value.__cause__, type(failure))
    assert SECRET_KEY not in str(excinfo.value)
    assert_recorded(status="failed", esp="mailjet", error_contains=str(failure))


# Recording switched off


def test_send_without_recording_touches_no_database(
    mailjet, no_store, http, django_assert_num_queries
):
    add_send_response(http, success(to=[sent("to@example.com", 801)]))
    msg = message()

    with django_assert_num_queries(0):
        msg.send()

    assert msg.anymail_status.message_id == "801"
    assert not Message.objects.exists()
