"""The Resend backend: the exact /emails and /emails/batch requests, responses and errors."""

import base64
from datetime import UTC, datetime, timedelta, timezone

import pytest
import requests
import responses
from django.core import mail
from django.core.mail import EmailMessage, EmailMultiAlternatives

from sending import services
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

BACKEND = "sending.backends.resend.EmailBackend"
SEND_URL = "https://api.resend.com/emails"
BATCH_URL = "https://api.resend.com/emails/batch"
API_KEY = "re_fake_test_key"
EMAIL_ID = "49a3999c-0ce1-4ea6-ab68-afcd6dc2e794"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR fake"


def resend_error(status: int, name: str, message: str) -> dict:
    """Resend's error shape."""
    return {"statusCode": status, "message": message, "name": name}


@pytest.fixture
def resend_settings(settings, use_backend):
    settings.ANYMAIL = {"RESEND_API_KEY": API_KEY}
    use_backend(BACKEND)
    return settings


@pytest.fixture
def accepted(http):
    http.add(responses.POST, SEND_URL, json={"id": EMAIL_ID})
    return http


def sent_body(http):
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


def ignore_unsupported(settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "IGNORE_UNSUPPORTED_FEATURES": True}


# The request


def test_send_mail_posts_json_with_bearer_auth(resend_settings, accepted):
    mail.send_mail("Subject", "Text body", "from@example.com", ["to@example.com"])

    request = accepted.calls[0].request
    assert request.method == "POST"
    assert request.url == SEND_URL
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Content-Type"] == "application/json"
    assert "Idempotency-Key" not in request.headers
    assert sent_body(accepted) == {
        "from": "from@example.com",
        "to": ["to@example.com"],
        "subject": "Subject",
        "text": "Text body",
    }


def test_all_recipients_share_the_email_id_and_are_queued(resend_settings, accepted):
    message = make_message(
        to=["to@example.com", "Other <other@example.com>"], bcc=["bcc@example.com"]
    )
    message.send()

    status = message.anymail_status
    assert status.message_id == EMAIL_ID
    assert {addr: (r.status, r.message_id) for addr, r in status.recipients.items()} == {
        "to@example.com": ("queued", EMAIL_ID),
        "other@example.com": ("queued", EMAIL_ID),
        "bcc@example.com": ("queued", EMAIL_ID),
    }
    assert_recorded(
        status="sent",
        esp="resend",
        recipients={
            "to@example.com": ("queued", EMAIL_ID),
            "other@example.com": ("queued", EMAIL_ID),
            "bcc@example.com": ("queued", EMAIL_ID),
        },
    )


def test_full_featured_message(resend_settings, accepted):
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
        metadata={"order_id": 1234, "customer": "c-77"},
        send_at=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
        esp_extra={"topic_id": "b6d24b8e-af0b-4c3c-be0c-359bbd97381e"},
    )
    message.attach_alternative("<p>HTML body</p>", "text/html")
    message.attach("receipt.pdf", b"%PDF-1.4 fake", "application/pdf")
    cid = message.attach_inline_image(PNG, filename="logo.png")
    message.send()

    assert sent_body(accepted) == {
        "from": '"Shop, Inc." <shop@example.com>',
        "to": ["Alice <to@example.com>"],
        "cc": ["cc@example.com"],
        "bcc": ["bcc@example.com"],
        "subject": "Your order",
        "reply_to": ["Help <help@example.com>", "sales@example.com"],
        "headers": {"X-Order": "1234", "List-Unsubscribe": "<mailto:unsub@example.com>"},
        "text": "Text body",
        "html": "<p>HTML body</p>",
        "attachments": [
            {
                "content": "JVBERi0xLjQgZmFrZQ==",
                "content_type": "application/pdf",
                "filename": "receipt.pdf",
            },
            {
                "content": base64.b64encode(PNG).decode("ascii"),
                "content_type": "image/png",
                "filename": "logo.png",
                "content_id": cid,
            },
        ],
        "tags": [
            {"name": "tag", "value": "receipt"},
            {"name": "order_id", "value": "1234"},
            {"name": "customer", "value": "c-77"},
        ],
        "scheduled_at": "2030-01-02T03:04:05+00:00",
        "topic_id": "b6d24b8e-af0b-4c3c-be0c-359bbd97381e",
    }


def test_send_at_is_sent_in_utc(resend_settings, accepted):
    tokyo = timezone(timedelta(hours=9))
    make_message(send_at=datetime(2030, 1, 2, 9, 0, tzinfo=tokyo)).send()

    assert sent_body(accepted)["scheduled_at"] == "2030-01-02T00:00:00+00:00"


def test_html_only_message_lets_resend_derive_the_text(resend_settings, accepted):
    message = EmailMessage("Subject", "<p>Hi</p>", "from@example.com", ["to@example.com"])
    message.content_subtype = "html"
    message.send()

    body = sent_body(accepted)
    assert body["html"] == "<p>Hi</p>"
    assert "text" not in body


def test_empty_text_body_is_left_out(resend_settings, accepted):
    message = EmailMultiAlternatives("Subject", "", "from@example.com", ["to@example.com"])
    message.attach_alternative("<p>Hi</p>", "text/html")
    message.send()

    assert "text" not in sent_body(accepted)


def test_idempotency_key_goes_in_a_header(resend_settings, accepted):
    make_message(esp_extra={"idempotency_key": "welcome-email/user-123"}).send()

    assert accepted.calls[0].request.headers["Idempotency-Key"] == "welcome-email/user-123"
    assert "idempotency_key" not in sent_body(accepted)


def test_suppressed_recipient_is_left_out_of_the_request(resend_settings, accepted):
    services.suppression_add(address="cc@example.com", reason="bounced")
    make_message(cc=["cc@example.com"]).send()

    assert "cc" not in sent_body(accepted)
    assert_recorded(
        status="sent",
        esp="resend",
        recipients={"to@example.com": ("queued", EMAIL_ID), "cc@example.com": ("suppressed", "")},
    )


# Tags and metadata (Resend tags)


def test_metadata_that_resend_refuses_is_unsupported(resend_settings, http):
    message = make_message(metadata={"order id": "1"})
    with pytest.raises(AnymailUnsupportedFeature, match="metadata item 'order id'") as excinfo:
        message.send()

    assert "ASCII letters, numbers, underscores and dashes" in str(excinfo.value)
    assert len(http.calls) == 0


def test_metadata_value_that_resend_refuses_is_unsupported(resend_settings, http):
    with pytest.raises(AnymailUnsupportedFeature, match="'customer': 'a@b.c'"):
        make_message(metadata={"customer": "a@b.c"}).send()
    assert len(http.calls) == 0


def test_ignored_refused_metadata_items_are_left_out(resend_settings, accepted):
    ignore_unsupported(resend_settings)
    make_message(metadata={"order id": "1", "ok": "yes", "long": "x" * 257}).send()

    assert sent_body(accepted)["tags"] == [{"name": "ok", "value": "yes"}]


def test_tag_that_resend_refuses_is_unsupported(resend_settings, http):
    with pytest.raises(AnymailUnsupportedFeature, match="tag 'Order Confirmation'"):
        make_message(tags=["Order Confirmation"]).send()
    assert len(http.calls) == 0


def test_multiple_tags_are_unsupported(resend_settings, http):
    with pytest.raises(AnymailUnsupportedFeature, match="multiple tags"):
        make_message(tags=["one", "two"]).send()
    assert len(http.calls) == 0


def test_ignored_multiple_tags_send_the_first(resend_settings, accepted):
    ignore_unsupported(resend_settings)
    make_message(tags=["one", "two"]).send()

    assert sent_body(accepted)["tags"] == [{"name": "tag", "value": "one"}]


@pytest.mark.parametrize(
    "attrs",
    [{"metadata": {"tag": "other"}}, {"merge_metadata": {"to@example.com": {"tag": "other"}}}],
)
def test_metadata_key_named_tag_is_reserved_for_the_tag(resend_settings, http, attrs):
    with pytest.raises(AnymailUnsupportedFeature, match="metadata key 'tag'"):
        make_message(**attrs).send()
    assert len(http.calls) == 0


# Templates and batch sends


def test_stored_template_with_global_variables(resend_settings, accepted):
    message = AnymailMessage(
        to=["to@example.com"],
        template_id="order-confirmation",
        merge_global_data={"PRODUCT": "Vintage Macintosh", "PRICE": 499},
    )
    # None: use the template's own from address and subject
    message.from_email = None
    message.subject = None
    message.send()

    assert sent_body(accepted) == {
        "to": ["to@example.com"],
        "template": {
            "id": "order-confirmation",
            "variables": {"PRODUCT": "Vintage Macintosh", "PRICE": 499},
        },
    }


def test_batch_template_send_has_one_email_per_to(resend_settings, http):
    http.add(
        responses.POST,
        BATCH_URL,
        json={"data": [{"id": "ae2014de-1111"}, {"id": "faccb7a5-2222"}]},
    )
    message = make_message(
        subject="",
        body="",
        to=["Alice <alice@example.com>", "bob@example.com"],
        cc=["cc@example.com"],
        template_id="order-shipped",
        merge_data={
            "alice@example.com": {"NAME": "Alice", "ORDER": 12345},
            "bob@example.com": {"NAME": "Bob", "SHIP_DATE": "May 20"},
        },
        merge_global_data={"SHIP_DATE": "May 15", "SHOP": "Example"},
        merge_metadata={"alice@example.com": {"customer": 1}},
        metadata={"campaign": "spring"},
    )
    message.send()

    assert http.calls[0].request.url == BATCH_URL
    assert sent_body(http) == [
        {
            "from": "from@example.com",
            "cc": ["cc@example.com"],
            "template": {
                "id": "order-shipped",
                "variables": {
                    "SHIP_DATE": "May 15",
                    "SHOP": "Example",
                    "NAME": "Alice",
                    "ORDER": 12345,
                },
            },
            "to": ["Alice <alice@example.com>"],
            "tags": [{"name": "campaign", "value": "spring"}, {"name": "customer", "value": "1"}],
        },
        {
            "from": "from@example.com",
            "cc": ["cc@example.com"],
            "template": {
                "id": "order-shipped",
                "variables": {"SHIP_DATE": "May 20", "SHOP": "Example", "NAME": "Bob"},
            },
            "to": ["bob@example.com"],
            "tags": [{"name": "campaign", "value": "spring"}],
        },
    ]
    assert message.anymail_status.message_id == {"ae2014de-1111", "faccb7a5-2222"}
    assert_recorded(
        status="sent",
        esp="resend",
        recipients={
            "alice@example.com": ("queued", "ae2014de-1111"),
            "bob@example.com": ("queued", "faccb7a5-2222"),
            # cc gets a copy of each email; its status carries the first id
            "cc@example.com": ("queued", "ae2014de-1111"),
        },
    )


def test_merge_headers_make_a_batch_with_headers_per_email(resend_settings, http):
    http.add(responses.POST, BATCH_URL, json={"data": [{"id": "id-1"}, {"id": "id-2"}]})
    make_message(
        to=["alice@example.com", "bob@example.com"],
        headers={"X-Shared": "yes"},
        merge_headers={"alice@example.com": {"List-Unsubscribe": "<https://example.com/u/1>"}},
    ).send()

    alice, bob = sent_body(http)
    assert alice["headers"] == {"X-Shared": "yes", "List-Unsubscribe": "<https://example.com/u/1>"}
    assert bob["headers"] == {"X-Shared": "yes"}
    assert alice["text"] == bob["text"] == "Text body"


def test_merge_data_without_template_is_unsupported(resend_settings, http):
    message = make_message(merge_data={"to@example.com": {"name": "Alice"}})
    with pytest.raises(AnymailUnsupportedFeature, match="merge_data without template_id"):
        message.send()
    assert len(http.calls) == 0


def test_merge_global_data_without_template_is_unsupported(resend_settings, http):
    with pytest.raises(AnymailUnsupportedFeature, match="merge_global_data without template_id"):
        make_message(merge_global_data={"site": "x"}).send()
    assert len(http.calls) == 0


def test_batch_with_attachments_is_unsupported(resend_settings, http):
    message = make_message(merge_metadata={"to@example.com": {"k": "1"}})
    message.attach("file.txt", b"content", "text/plain")
    with pytest.raises(AnymailUnsupportedFeature, match="attachments with batch sending"):
        message.send()
    assert len(http.calls) == 0


def test_batch_with_send_at_is_unsupported(resend_settings, http):
    message = make_message(
        merge_metadata={"to@example.com": {"k": "1"}},
        send_at=datetime(2030, 1, 1, tzinfo=UTC),
    )
    with pytest.raises(AnymailUnsupportedFeature, match="send_at with batch sending"):
        message.send()
    assert len(http.calls) == 0


def test_batch_to_more_than_100_recipients_is_unsupported(resend_settings, http):
    to = [f"user{n}@example.com" for n in range(101)]
    message = make_message(to=to, merge_metadata={})
    with pytest.raises(AnymailUnsupportedFeature, match="more than 100 'to' recipients"):
        message.send()
    assert len(http.calls) == 0


def test_unserializable_merge_data_raises_serialization_error(resend_settings, http):
    message = make_message(template_id="t", merge_data={"to@example.com": {"x": object()}})
    with pytest.raises(AnymailSerializationError):
        message.send()
    assert len(http.calls) == 0


# Unsupported features


@pytest.mark.parametrize(
    ("attrs", "feature"),
    [
        ({"envelope_sender": "bounces@example.com"}, "envelope_sender"),
        ({"track_opens": True}, "track_opens"),
        ({"track_clicks": False}, "track_clicks"),
    ],
)
def test_features_resend_lacks_are_unsupported(resend_settings, http, attrs, feature):
    with pytest.raises(AnymailUnsupportedFeature, match=f"Resend does not support {feature}"):
        make_message(**attrs).send()
    assert len(http.calls) == 0


def test_amp_body_is_unsupported(resend_settings, http):
    message = EmailMultiAlternatives("Subject", "Text", "from@example.com", ["to@example.com"])
    message.attach_alternative("<html amp4email></html>", "text/x-amp-html")
    with pytest.raises(AnymailUnsupportedFeature, match="AMP-HTML"):
        message.send()
    assert len(http.calls) == 0


def test_ignored_unsupported_features_are_left_out(resend_settings, accepted):
    ignore_unsupported(resend_settings)
    make_message(envelope_sender="bounces@example.com", track_opens=True).send()

    assert sent_body(accepted) == {
        "from": "from@example.com",
        "to": ["to@example.com"],
        "subject": "Subject",
        "text": "Text body",
    }


# Settings


def test_missing_api_key_names_the_setting(settings):
    settings.ANYMAIL = {}
    with pytest.raises(AnymailConfigurationError, match=r"RESEND_API_KEY"):
        make_backend(BACKEND)


def test_bare_resend_api_key_setting_is_accepted(settings, use_backend, accepted):
    settings.ANYMAIL = {}
    settings.RESEND_API_KEY = "re_bare_fake_key"
    use_backend(BACKEND)
    make_message().send()

    assert accepted.calls[0].request.headers["Authorization"] == "Bearer re_bare_fake_key"


def test_api_url_setting_without_trailing_slash(resend_settings, http):
    http.add(responses.POST, "https://resend.test/v1/emails", json={"id": EMAIL_ID})
    resend_settings.ANYMAIL = {
        **resend_settings.ANYMAIL,
        "RESEND_API_URL": "https://resend.test/v1",
    }
    make_message().send()

    assert http.calls[0].request.url == "https://resend.test/v1/emails"


# Errors


def test_validation_error_raises_with_resends_message(resend_settings, http):
    http.add(
        responses.POST,
        SEND_URL,
        status=422,
        json=resend_error(
            422,
            "validation_error",
            "Invalid `from` field. The email address needs to follow the "
            "`email@example.com` or `Name <email@example.com>` format.",
        ),
    )
    with pytest.raises(AnymailAPIError) as excinfo:
        make_message().send()

    error = excinfo.value
    assert error.status_code == 422
    assert isinstance(error, requests.HTTPError)
    assert "validation_error" in str(error)
    assert "Invalid `from` field" in str(error)
    assert_recorded(
        status="failed",
        esp="resend",
        error_contains="Invalid `from` field",
        recipients={"to@example.com": ("failed", "")},
    )


@pytest.mark.parametrize(
    ("status", "name", "text"),
    [
        (401, "missing_api_key", "Missing API key in the authorization header."),
        (403, "invalid_api_key", "API key is invalid"),
    ],
)
def test_auth_failure_raises_and_is_recorded(resend_settings, http, status, name, text):
    http.add(responses.POST, SEND_URL, status=status, json=resend_error(status, name, text))
    with pytest.raises(AnymailAPIError) as excinfo:
        make_message().send()

    assert excinfo.value.status_code == status
    assert text in str(excinfo.value)
    assert API_KEY not in str(excinfo.value)
    assert_recorded(status="failed", esp="resend", error_contains=text)


def test_rate_limit_raises_with_status_429(resend_settings, http):
    text = "Too many requests. You can only make 2 requests per second."
    http.add(
        responses.POST,
        SEND_URL,
        status=429,
        json=resend_error(429, "rate_limit_exceeded", text),
        headers={"retry-after": "1"},
    )
    with pytest.raises(AnymailAPIError) as excinfo:
        make_message().send()

    assert excinfo.value.status_code == 429
    assert "rate_limit_exceeded" in str(excinfo.value)
    assert_recorded(status="failed", esp="resend", error_contains=text)


def test_server_error_raises_and_is_recorded(resend_settings, http):
    http.add(
        responses.POST,
        SEND_URL,
        status=500,
        json=resend_error(500, "application_error", "An unexpected error occurred."),
    )
    with pytest.raises(AnymailAPIError) as excinfo:
        make_message().send()

    assert excinfo.value.status_code == 500
    assert_recorded(status="failed", esp="resend", error_contains="An unexpected error occurred.")


def test_non_json_success_body_raises(resend_settings, http):
    http.add(responses.POST, SEND_URL, status=200, body="<html>OK</html>")
    with pytest.raises(AnymailAPIError, match="Invalid JSON in Resend API response"):
        make_message().send()

    assert_recorded(status="failed", esp="resend", error_contains="Invalid JSON")


def test_batch_answer_with_too_few_ids_raises(resend_settings, http):
    http.add(responses.POST, BATCH_URL, json={"data": [{"id": "id-1"}]})
    message = make_message(to=["a@example.com", "b@example.com"], merge_metadata={})
    with pytest.raises(AnymailAPIError, match="Invalid Resend API response format"):
        message.send()


@pytest.mark.parametrize(
    "problem", [requests.ConnectionError("connection refused"), requests.Timeout("read timed out")]
)
def test_connection_problems_raise_api_error_naming_the_url(resend_settings, http, problem):
    http.add(responses.POST, SEND_URL, body=problem)
    with pytest.raises(AnymailAPIError) as excinfo:
        make_message().send()

    assert excinfo.value.__cause__ is problem
    assert SEND_URL in str(excinfo.value)
    assert API_KEY not in str(excinfo.value)
    assert_recorded(status="failed", esp="resend", error_contains=str(problem))


def test_debug_output_hides_the_api_key(resend_settings, accepted, capsys):
    resend_settings.ANYMAIL = {**resend_settings.ANYMAIL, "DEBUG_API_REQUESTS": True}
    make_message().send()

    output = capsys.readouterr().out
    assert "POST " + SEND_URL in output
    assert API_KEY not in output


# Recording switched off


def test_no_store_sends_without_touching_the_database(
    resend_settings, no_store, accepted, django_assert_num_queries
):
    message = make_message()
    with django_assert_num_queries(0):
        message.send()

    assert message.anymail_status.status == {"queued"}
    assert Message.objects.count() == 0
