"""The Mailtrap backend: Email API and Sandbox requests, responses and errors."""

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
    AnymailUnsupportedFeature,
)
from sending.message import AnymailMessage
from sending.models import Message
from tests.conftest import make_backend
from tests.helpers import assert_recorded, request_json

pytestmark = pytest.mark.django_db

BACKEND = "sending.backends.mailtrap.EmailBackend"
SEND_URL = "https://send.api.mailtrap.io/api/send"
BATCH_URL = "https://send.api.mailtrap.io/api/batch"
API_TOKEN = "test-mailtrap-api-token"
TEMPLATE_UUID = "b81aabcd-1a1e-41cf-91b6-eca0254b3d96"
PNG = b"\x89PNG\r\n\x1a\nfake-image-bytes"


@pytest.fixture
def mailtrap(settings, use_backend):
    settings.ANYMAIL = {"MAILTRAP_API_TOKEN": API_TOKEN}
    use_backend(BACKEND)


def message_id(n):
    """A message id shaped like Mailtrap's."""
    return f"0c7fd939-02cf-11ed-88c2-{n:012x}"


def add_send_response(http, *ids, url=SEND_URL):
    http.add(responses.POST, url, json={"success": True, "message_ids": list(ids)})


def message(**kwargs):
    fields = {
        "subject": "Subject",
        "body": "Body",
        "from_email": "from@example.com",
        "to": ["to@example.com"],
    }
    return AnymailMessage(**{**fields, **kwargs})


# Requests


def test_plain_message_is_posted_to_the_transactional_stream_with_bearer_token(mailtrap, http):
    add_send_response(http, message_id(1))

    sent_count = mail.send_mail("Subject", "Body", "from@example.com", ["to@example.com"])

    assert sent_count == 1
    request = http.calls[0].request
    assert request.method == "POST"
    assert request.url == SEND_URL
    assert request.headers["Authorization"] == f"Bearer {API_TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    assert request_json(http.calls[0]) == {
        "from": {"email": "from@example.com"},
        "to": [{"email": "to@example.com"}],
        "subject": "Subject",
        "text": "Body",
    }


def test_plain_message_is_recorded_with_mailtrap_message_id(mailtrap, http):
    add_send_response(http, message_id(1))

    msg = message()
    msg.send()

    assert msg.anymail_status.status == {"sent"}
    assert msg.anymail_status.message_id == message_id(1)
    assert_recorded(
        status="sent", esp="mailtrap", recipients={"to@example.com": ("sent", message_id(1))}
    )


def test_full_featured_message(mailtrap, http):
    add_send_response(http, message_id(1), message_id(2), message_id(3))
    msg = message(
        from_email='"Shop, Inc." <shop@example.com>',
        to=["Ann Ünicode <ann@example.com>"],
        cc=["cc@example.com"],
        bcc=["bcc@example.com"],
        reply_to=["Help Desk <help@example.com>"],
        headers={"X-Order": "42"},
        tags=["orders"],
        metadata={"order_id": "42"},
        esp_extra={"headers": {"X-Source": "shop"}},
    )
    msg.attach_alternative("<p>HTML</p>", "text/html")
    msg.attach("invoice.pdf", b"%PDF-1.4 fake", "application/pdf")
    cid = msg.attach_inline_image(PNG, filename="logo.png")

    msg.send()

    assert request_json(http.calls[0]) == {
        "from": {"email": "shop@example.com", "name": "Shop, Inc."},
        "to": [{"email": "ann@example.com", "name": "Ann Ünicode"}],
        "cc": [{"email": "cc@example.com"}],
        "bcc": [{"email": "bcc@example.com"}],
        "reply_to": {"email": "help@example.com", "name": "Help Desk"},
        "subject": "Subject",
        "text": "Body",
        "html": "<p>HTML</p>",
        "headers": {"X-Order": "42", "X-Source": "shop"},
        "attachments": [
            {
                "content": base64.b64encode(b"%PDF-1.4 fake").decode(),
                "filename": "invoice.pdf",
                "type": "application/pdf",
            },
            {
                "content": base64.b64encode(PNG).decode(),
                "filename": "logo.png",
                "type": "image/png",
                "disposition": "inline",
                "content_id": cid,
            },
        ],
        "category": "orders",
        "custom_variables": {"order_id": "42"},
    }


def test_message_ids_map_to_recipients_in_to_cc_bcc_order(mailtrap, http):
    add_send_response(http, message_id(1), message_id(2), message_id(3), message_id(4))
    msg = message(
        to=["to1@example.com", "to2@example.com"], cc=["cc@example.com"], bcc=["bcc@example.com"]
    )

    msg.send()

    assert_recorded(
        status="sent",
        esp="mailtrap",
        recipients={
            "to1@example.com": ("sent", message_id(1)),
            "to2@example.com": ("sent", message_id(2)),
            "cc@example.com": ("sent", message_id(3)),
            "bcc@example.com": ("sent", message_id(4)),
        },
    )


def test_unmatched_message_id_count_records_sent_without_ids(mailtrap, http):
    add_send_response(http, message_id(1))
    msg = message(to=["to1@example.com", "to2@example.com"])

    msg.send()

    assert msg.anymail_status.status == {"sent"}
    assert msg.anymail_status.message_id is None


def test_html_only_message_sends_html(mailtrap, http):
    add_send_response(http, message_id(1))
    msg = EmailMessage("Subject", "<b>Hi</b>", "from@example.com", ["to@example.com"])
    msg.content_subtype = "html"

    msg.send()

    body = request_json(http.calls[0])
    assert body["html"] == "<b>Hi</b>"
    assert "text" not in body


# Streams and the sandbox


def test_sandbox_id_sends_to_that_sandbox_inbox(settings, http):
    settings.ANYMAIL = {"MAILTRAP_API_TOKEN": API_TOKEN, "MAILTRAP_SANDBOX_ID": 12345}
    add_send_response(http, message_id(1), url="https://sandbox.api.mailtrap.io/api/send/12345")

    make_backend(BACKEND).send_messages([message()])

    assert http.calls[0].request.url == "https://sandbox.api.mailtrap.io/api/send/12345"


def test_empty_sandbox_id_means_no_sandbox(settings, http):
    settings.ANYMAIL = {"MAILTRAP_API_TOKEN": API_TOKEN, "MAILTRAP_SANDBOX_ID": ""}
    add_send_response(http, message_id(1))

    make_backend(BACKEND).send_messages([message()])

    assert http.calls[0].request.url == SEND_URL


def test_bulk_setting_sends_through_the_bulk_stream(settings, http):
    settings.ANYMAIL = {"MAILTRAP_API_TOKEN": API_TOKEN, "MAILTRAP_BULK": True}
    add_send_response(http, message_id(1), url="https://bulk.api.mailtrap.io/api/send")

    make_backend(BACKEND).send_messages([message()])

    assert http.calls[0].request.url == "https://bulk.api.mailtrap.io/api/send"


def test_bulk_can_be_chosen_per_connection(settings, http):
    settings.ANYMAIL = {"MAILTRAP_API_TOKEN": API_TOKEN}
    add_send_response(http, message_id(1), url="https://bulk.api.mailtrap.io/api/send")

    make_backend(BACKEND, bulk=True).send_messages([message()])

    assert http.calls[0].request.url == "https://bulk.api.mailtrap.io/api/send"


def test_bulk_and_sandbox_together_is_a_configuration_error(settings):
    settings.ANYMAIL = {
        "MAILTRAP_API_TOKEN": API_TOKEN,
        "MAILTRAP_SANDBOX_ID": 12345,
        "MAILTRAP_BULK": True,
    }

    with pytest.raises(AnymailConfigurationError, match="MAILTRAP_SANDBOX_ID and MAILTRAP_BULK"):
        make_backend(BACKEND)


def test_api_url_setting_overrides_the_host(settings, http):
    settings.ANYMAIL = {
        "MAILTRAP_API_TOKEN": API_TOKEN,
        "MAILTRAP_API_URL": "https://mailtrap-proxy.example.com/api",
    }
    add_send_response(http, message_id(1), url="https://mailtrap-proxy.example.com/api/send")

    make_backend(BACKEND).send_messages([message()])

    assert http.calls[0].request.url == "https://mailtrap-proxy.example.com/api/send"


# Templates and batch sending


def test_stored_template_sends_template_uuid_and_variables(mailtrap, http):
    add_send_response(http, message_id(1))
    msg = EmailMessage(from_email="from@example.com", to=["to@example.com"])
    msg.template_id = TEMPLATE_UUID
    msg.merge_global_data = {"user_name": "John Doe"}

    msg.send()

    assert request_json(http.calls[0]) == {
        "from": {"email": "from@example.com"},
        "to": [{"email": "to@example.com"}],
        "template_uuid": TEMPLATE_UUID,
        "template_variables": {"user_name": "John Doe"},
    }


def test_batch_send_posts_base_and_one_request_per_to_recipient(mailtrap, http):
    http.add(
        responses.POST,
        BATCH_URL,
        json={
            "success": True,
            "responses": [
                {"success": True, "message_ids": [message_id(1)]},
                {"success": True, "message_ids": [message_id(2)]},
            ],
        },
    )
    msg = EmailMessage(
        from_email="from@example.com", to=["Alice <alice@example.com>", "bob@example.com"]
    )
    msg.template_id = TEMPLATE_UUID
    msg.merge_global_data = {"ship_date": "May 15", "name": "customer"}
    msg.merge_data = {"alice@example.com": {"name": "Alice"}, "bob@example.com": {"name": "Bob"}}
    msg.metadata = {"campaign": "spring"}
    msg.merge_metadata = {"alice@example.com": {"customer": "A1"}}
    msg.extra_headers = {"X-Shared": "yes"}
    msg.merge_headers = {"bob@example.com": {"List-Unsubscribe": "<https://example.com/u/bob>"}}

    msg.send()

    assert http.calls[0].request.url == BATCH_URL
    assert request_json(http.calls[0]) == {
        "base": {
            "from": {"email": "from@example.com"},
            "headers": {"X-Shared": "yes"},
            "template_uuid": TEMPLATE_UUID,
            "custom_variables": {"campaign": "spring"},
            "template_variables": {"ship_date": "May 15", "name": "customer"},
        },
        "requests": [
            {
                "to": [{"email": "alice@example.com", "name": "Alice"}],
                "custom_variables": {"campaign": "spring", "customer": "A1"},
                "template_variables": {"ship_date": "May 15", "name": "Alice"},
            },
            {
                "to": [{"email": "bob@example.com"}],
                "template_variables": {"ship_date": "May 15", "name": "Bob"},
                "headers": {"X-Shared": "yes", "List-Unsubscribe": "<https://example.com/u/bob>"},
            },
        ],
    }
    assert_recorded(
        status="sent",
        esp="mailtrap",
        recipients={
            "alice@example.com": ("sent", message_id(1)),
            "bob@example.com": ("sent", message_id(2)),
        },
    )


def test_batch_send_copies_cc_into_every_request(mailtrap, http):
    http.add(
        responses.POST,
        BATCH_URL,
        json={
            "success": True,
            "responses": [
                {"success": True, "message_ids": [message_id(1), message_id(2)]},
                {"success": True, "message_ids": [message_id(3), message_id(4)]},
            ],
        },
    )
    msg = message(
        to=["alice@example.com", "bob@example.com"],
        cc=["boss@example.com"],
        merge_metadata={"alice@example.com": {"n": "1"}, "bob@example.com": {"n": "2"}},
    )

    msg.send()

    requests_ = request_json(http.calls[0])["requests"]
    assert [r["cc"] for r in requests_] == [[{"email": "boss@example.com"}]] * 2
    # The cc's status carries the id of its first copy.
    assert msg.anymail_status.recipients["boss@example.com"].message_id == message_id(2)


def test_batch_send_to_sandbox_uses_the_sandbox_batch_endpoint(settings, http):
    settings.ANYMAIL = {"MAILTRAP_API_TOKEN": API_TOKEN, "MAILTRAP_SANDBOX_ID": "12345"}
    url = "https://sandbox.api.mailtrap.io/api/batch/12345"
    http.add(
        responses.POST,
        url,
        json={"success": True, "responses": [{"success": True, "message_ids": [message_id(1)]}]},
    )

    make_backend(BACKEND).send_messages([message(merge_metadata={"to@example.com": {"n": "1"}})])

    assert http.calls[0].request.url == url


def test_batch_with_some_messages_refused_reports_them_per_recipient(mailtrap, http):
    http.add(
        responses.POST,
        BATCH_URL,
        json={
            "success": True,
            "responses": [
                {"success": True, "message_ids": [message_id(1)]},
                {"success": False, "errors": ["'to' address is invalid"]},
            ],
        },
    )
    msg = message(
        to=["alice@example.com", "bob@example.com"],
        merge_metadata={"alice@example.com": {"n": "1"}},
    )

    msg.send()  # no exception: Mailtrap accepted part of the batch

    assert_recorded(
        status="sent",
        esp="mailtrap",
        recipients={
            "alice@example.com": ("sent", message_id(1)),
            "bob@example.com": ("failed", ""),
        },
    )


def test_batch_with_every_message_refused_raises(mailtrap, http):
    http.add(
        responses.POST,
        BATCH_URL,
        json={
            "success": True,
            "responses": [
                {"success": False, "errors": ["'from' address is invalid"]},
                {"success": False, "errors": ["'from' address is invalid"]},
            ],
        },
    )
    msg = message(
        from_email="not-verified@example.com",
        to=["alice@example.com", "bob@example.com"],
        merge_metadata={},
    )

    with pytest.raises(AnymailAPIError, match="'from' address is invalid"):
        msg.send()
    assert_recorded(status="failed", esp="mailtrap", error_contains="'from' address is invalid")


# Unsupported features


@pytest.mark.parametrize(
    ("attrs", "feature"),
    [
        ({"send_at": datetime(2026, 5, 1, 12, tzinfo=UTC)}, "send_at"),
        ({"tags": ["one", "two"]}, "multiple tags"),
        ({"reply_to": ["a@example.com", "b@example.com"]}, "multiple reply_to addresses"),
        ({"track_opens": True}, "track_opens"),
        ({"track_clicks": False}, "track_clicks"),
        ({"envelope_sender": "bounces@example.com"}, "envelope_sender"),
        ({"merge_data": {"to@example.com": {"a": "1"}}}, "merge_data without template_id"),
        ({"merge_global_data": {"a": "1"}}, "merge_global_data without template_id"),
    ],
)
def test_unsupported_feature_raises_naming_the_feature(mailtrap, http, attrs, feature):
    msg = message(**attrs)

    with pytest.raises(AnymailUnsupportedFeature, match=f"Mailtrap does not support {feature}"):
        msg.send()
    assert len(http.calls) == 0


def test_amp_body_is_unsupported(mailtrap, http):
    msg = message()
    msg.attach_alternative("<html amp4email></html>", "text/x-amp-html")

    with pytest.raises(AnymailUnsupportedFeature, match="AMP-HTML body"):
        msg.send()


def test_ignore_unsupported_features_sends_the_first_tag(settings, mailtrap, http):
    settings.ANYMAIL = {**settings.ANYMAIL, "IGNORE_UNSUPPORTED_FEATURES": True}
    add_send_response(http, message_id(1))
    msg = message(tags=["one", "two"], track_opens=True)

    msg.send()

    body = request_json(http.calls[0])
    assert body["category"] == "one"
    assert msg.anymail_status.status == {"sent"}


# Settings


def test_missing_api_token_names_the_setting(settings):
    settings.ANYMAIL = {}

    with pytest.raises(AnymailConfigurationError, match="MAILTRAP_API_TOKEN"):
        make_backend(BACKEND)


def test_api_token_can_be_a_bare_setting(settings, http):
    settings.ANYMAIL = {}
    settings.MAILTRAP_API_TOKEN = "bare-token"
    add_send_response(http, message_id(1))

    make_backend(BACKEND).send_messages([message()])

    assert http.calls[0].request.headers["Authorization"] == "Bearer bare-token"


# Errors


@pytest.mark.parametrize(
    ("status", "errors"),
    [
        (401, ["Unauthorized"]),
        (403, ["Forbidden"]),
        (429, ["Rate limit exceeded"]),
        (500, ["Internal server error"]),
    ],
)
def test_error_status_raises_api_error_with_mailtraps_text(mailtrap, http, status, errors):
    http.add(responses.POST, SEND_URL, status=status, json={"success": False, "errors": errors})

    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()

    assert isinstance(excinfo.value, requests.HTTPError)
    assert excinfo.value.status_code == status
    assert f"Mailtrap API error:\n{errors[0]}" in str(excinfo.value)
    assert API_TOKEN not in str(excinfo.value)
    assert_recorded(status="failed", esp="mailtrap", error_contains=errors[0])


def test_validation_error_lists_every_mailtrap_error(mailtrap, http):
    http.add(
        responses.POST,
        SEND_URL,
        status=400,
        json={
            "success": False,
            "errors": ["'subject' is required", "must specify either text or html body"],
        },
    )

    with pytest.raises(AnymailAPIError) as excinfo:
        message(subject="", body="").send()

    assert excinfo.value.status_code == 400
    assert "'subject' is required\nmust specify either text or html body" in str(excinfo.value)
    assert_recorded(
        status="failed", esp="mailtrap", error_contains="must specify either text or html body"
    )


def test_success_false_in_a_200_answer_raises(mailtrap, http):
    http.add(
        responses.POST, SEND_URL, status=200, json={"success": False, "errors": ["Sending paused"]}
    )

    with pytest.raises(AnymailAPIError, match="Sending paused"):
        message().send()


def test_non_json_success_body_raises_api_error(mailtrap, http):
    http.add(responses.POST, SEND_URL, status=200, body="<html>Gateway says hi</html>")

    with pytest.raises(AnymailAPIError, match="Invalid JSON in Mailtrap API response"):
        message().send()
    assert_recorded(status="failed", esp="mailtrap", error_contains="Invalid JSON")


def test_unexpected_json_shape_raises_api_error(mailtrap, http):
    http.add(responses.POST, SEND_URL, status=200, json={"success": True})

    with pytest.raises(AnymailAPIError, match="Invalid Mailtrap API response format"):
        message().send()


@pytest.mark.parametrize(
    "failure", [requests.ConnectionError("connection refused"), requests.Timeout("read timeout")]
)
def test_network_failure_raises_api_error(mailtrap, http, failure):
    http.add(responses.POST, SEND_URL, body=failure)

    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()

    assert f"Error posting to {SEND_URL}" in str(excinfo.value)
    assert isinstance(excinfo.value.__cause__, type(failure))
    assert API_TOKEN not in str(excinfo.value)
    assert_recorded(status="failed", esp="mailtrap", error_contains=str(failure))


# Recording switched off


def test_send_without_recording_touches_no_database(
    mailtrap, no_store, http, django_assert_num_queries
):
    add_send_response(http, message_id(9))
    msg = message()

    with django_assert_num_queries(0):
        msg.send()

    assert msg.anymail_status.message_id == message_id(9)
    assert not Message.objects.exists()
