"""The MailerSend backend against MailerSend's email API v1 (email and bulk-email)."""

from datetime import UTC, datetime

import pytest
import requests
from django.core.mail import send_mail

from sending.exceptions import (
    AnymailAPIError,
    AnymailConfigurationError,
    AnymailRecipientsRefused,
    AnymailUnsupportedFeature,
)
from sending.message import AnymailMessage
from sending.models import Message
from tests.helpers import assert_recorded, request_json

pytestmark = pytest.mark.django_db

BACKEND = "sending.backends.mailersend.EmailBackend"
EMAIL_URL = "https://api.mailersend.com/v1/email"
BULK_EMAIL_URL = "https://api.mailersend.com/v1/bulk-email"
API_TOKEN = "mlsn.test-token-not-real"
MESSAGE_ID = "61487a14608b1d0b4d506633"
BULK_EMAIL_ID = "614470d1588b866d0454f3e2"


@pytest.fixture
def mailersend(settings, use_backend):
    settings.ANYMAIL = {"MAILERSEND_API_TOKEN": API_TOKEN}
    use_backend(BACKEND)


def accept(http, message_id=MESSAGE_ID, json=None, headers=None):
    """Answer /email the way MailerSend does: 202, id in a header, body empty or JSON warnings."""
    response_headers = {"X-Message-Id": message_id} if message_id else {}
    response_headers.update(headers or {})
    if json is None:
        http.post(
            EMAIL_URL,
            status=202,
            body="",
            content_type="text/html; charset=UTF-8",
            headers=response_headers,
        )
    else:
        http.post(EMAIL_URL, status=202, json=json, headers=response_headers)


def accept_bulk(http):
    http.post(
        BULK_EMAIL_URL,
        status=202,
        json={"message": "The bulk email is being processed.", "bulk_email_id": BULK_EMAIL_ID},
    )


def message(**kwargs):
    fields = {
        "subject": "Subject",
        "body": "Text body",
        "from_email": "from@example.com",
        "to": ["to@example.com"],
    }
    return AnymailMessage(**{**fields, **kwargs})


def sent_json(http):
    (call,) = http.calls
    return request_json(call)


# Requests


def test_plain_message_posts_json_with_bearer_token(mailersend, http):
    accept(http)
    message().send()

    request = http.calls[0].request
    assert request.method == "POST"
    assert request.url == EMAIL_URL
    assert request.headers["Authorization"] == f"Bearer {API_TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    assert request_json(http.calls[0]) == {
        "from": {"email": "from@example.com"},
        "to": [{"email": "to@example.com"}],
        "subject": "Subject",
        "text": "Text body",
    }


def test_send_mail_with_display_names_and_html(mailersend, http):
    accept(http)
    send_mail(
        "Subject",
        "Text body",
        "From Name <from@example.com>",
        ["Recipient <to@example.com>"],
        html_message="<p>HTML body</p>",
    )
    assert sent_json(http) == {
        "from": {"email": "from@example.com", "name": "From Name"},
        "to": [{"email": "to@example.com", "name": "Recipient"}],
        "subject": "Subject",
        "text": "Text body",
        "html": "<p>HTML body</p>",
    }


def test_full_featured_message(mailersend, http):
    accept(http)
    msg = message(
        cc=["cc@example.com"],
        bcc=["Blind <bcc@example.com>"],
        reply_to=["Replies <reply@example.com>"],
        headers={
            "In-Reply-To": "<original@example.com>",
            "References": "<first@example.com> <original@example.com>",
            "Precedence": "bulk",
            "List-Unsubscribe": "https://example.com/unsubscribe",
            "X-Custom": "custom value",
        },
        tags=["welcome", "onboarding"],
        track_clicks=False,
        track_opens=True,
        send_at=datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC),
        esp_extra={"settings": {"track_content": False}},
    )
    msg.attach_alternative("<p>HTML body <img src='cid:logo'></p>", "text/html")
    msg.attach("report.pdf", b"%PDF-1.4 content", "application/pdf")
    cid = msg.attach_inline_image(b"\x89PNG\r\n\x1a\n", "logo.png")
    msg.send()

    assert sent_json(http) == {
        "from": {"email": "from@example.com"},
        "to": [{"email": "to@example.com"}],
        "cc": [{"email": "cc@example.com"}],
        "bcc": [{"email": "bcc@example.com", "name": "Blind"}],
        "reply_to": {"email": "reply@example.com", "name": "Replies"},
        "subject": "Subject",
        "text": "Text body",
        "html": "<p>HTML body <img src='cid:logo'></p>",
        "in_reply_to": "original@example.com",
        "references": ["<first@example.com>", "<original@example.com>"],
        "precedence_bulk": True,
        "list_unsubscribe": "https://example.com/unsubscribe",
        "headers": [{"name": "X-Custom", "value": "custom value"}],
        "attachments": [
            {
                "content": "JVBERi0xLjQgY29udGVudA==",
                "filename": "report.pdf",
                "disposition": "attachment",
            },
            {
                "content": "iVBORw0KGgo=",
                "filename": "logo.png",
                "disposition": "inline",
                "id": cid,
            },
        ],
        "tags": ["welcome", "onboarding"],
        "settings": {"track_clicks": False, "track_opens": True, "track_content": False},
        "send_at": 1904281689,
    }


def test_success_records_every_recipient_queued_with_the_message_id(mailersend, http):
    accept(http)
    msg = message(to=["to@example.com"], cc=["cc@example.com"], bcc=["bcc@example.com"])
    msg.send()

    assert msg.anymail_status.status == {"queued"}
    assert msg.anymail_status.message_id == MESSAGE_ID
    assert_recorded(
        status="sent",
        esp="mailersend",
        recipients={
            "to@example.com": ("queued", MESSAGE_ID),
            "cc@example.com": ("queued", MESSAGE_ID),
            "bcc@example.com": ("queued", MESSAGE_ID),
        },
    )


def test_precedence_other_than_bulk_turns_precedence_bulk_off(mailersend, http):
    accept(http)
    message(headers={"Precedence": "first-class"}).send()
    assert sent_json(http)["precedence_bulk"] is False


def test_attachment_without_filename_is_named_for_its_type(mailersend, http):
    accept(http)
    msg = message()
    msg.attach(None, b"a,b\n1,2\n", "text/csv")
    msg.send()
    assert sent_json(http)["attachments"] == [
        {"content": "YSxiCjEsMgo=", "filename": "attachment.csv", "disposition": "attachment"}
    ]


def test_esp_extra_api_token_overrides_the_setting_for_one_message(mailersend, http):
    accept(http)
    message(esp_extra={"api_token": "mlsn.other-domain-token", "precedence_bulk": False}).send()
    assert http.calls[0].request.headers["Authorization"] == "Bearer mlsn.other-domain-token"
    body = sent_json(http)
    assert body["precedence_bulk"] is False
    assert "api_token" not in body


def test_api_url_setting_changes_the_endpoint(settings, use_backend, http):
    settings.ANYMAIL = {
        "MAILERSEND_API_TOKEN": API_TOKEN,
        "MAILERSEND_API_URL": "https://proxy.example.com/v1",
    }
    use_backend(BACKEND)
    http.post(
        "https://proxy.example.com/v1/email", status=202, body="", headers={"X-Message-Id": "abc"}
    )
    message().send()
    assert len(http.calls) == 1


# Templates, personalization and batch sends


def test_global_merge_data_becomes_personalization_for_every_to(mailersend, http):
    accept(http)
    message(
        to=["alice@example.com", "bob@example.com"],
        merge_global_data={"company": "Example Inc."},
    ).send()
    assert sent_json(http)["personalization"] == [
        {"email": "alice@example.com", "data": {"company": "Example Inc."}},
        {"email": "bob@example.com", "data": {"company": "Example Inc."}},
    ]


def test_stored_template_without_subject_or_from(mailersend, http):
    accept(http)
    msg = message(subject=None, body=None, template_id="vzq12345678")
    msg.from_email = None  # use the template's default sender
    msg.merge_global_data = {"ship_date": "May 15"}
    msg.send()
    assert sent_json(http) == {
        "to": [{"email": "to@example.com"}],
        "template_id": "vzq12345678",
        "personalization": [{"email": "to@example.com", "data": {"ship_date": "May 15"}}],
    }


def test_batch_to_one_recipient_needs_no_batch_send_mode(mailersend, http):
    accept(http)
    message(merge_data={"to@example.com": {"name": "Alice"}}, merge_global_data={"x": 1}).send()
    assert sent_json(http)["personalization"] == [
        {"email": "to@example.com", "data": {"x": 1, "name": "Alice"}}
    ]


def test_batch_to_several_recipients_without_a_mode_is_refused(settings, use_backend, http):
    # Not ignorable: either choice would change what recipients see or get.
    settings.ANYMAIL = {"MAILERSEND_API_TOKEN": API_TOKEN, "IGNORE_UNSUPPORTED_FEATURES": True}
    use_backend(BACKEND)
    msg = message(to=["a@example.com", "b@example.com"], merge_data={"a@example.com": {"x": 1}})
    with pytest.raises(AnymailUnsupportedFeature, match="MAILERSEND_BATCH_SEND_MODE"):
        msg.send()
    assert not Message.objects.exists()


def test_expose_to_list_sends_one_message_with_personalization(settings, use_backend, http):
    settings.ANYMAIL = {
        "MAILERSEND_API_TOKEN": API_TOKEN,
        "MAILERSEND_BATCH_SEND_MODE": "expose-to-list",
    }
    use_backend(BACKEND)
    accept(http)
    msg = message(
        to=["alice@example.com", "Bob <bob@example.com>"],
        subject="Order {{ order_no }}",
        merge_data={
            "alice@example.com": {"name": "Alice", "order_no": "12345"},
            "bob@example.com": {"name": "Bob", "order_no": "54321"},
        },
        merge_global_data={"ship_date": "May 15"},
    )
    msg.send()
    assert sent_json(http) == {
        "from": {"email": "from@example.com"},
        "to": [{"email": "alice@example.com"}, {"email": "bob@example.com", "name": "Bob"}],
        "subject": "Order {{ order_no }}",
        "text": "Text body",
        "personalization": [
            {
                "email": "alice@example.com",
                "data": {"ship_date": "May 15", "name": "Alice", "order_no": "12345"},
            },
            {
                "email": "bob@example.com",
                "data": {"ship_date": "May 15", "name": "Bob", "order_no": "54321"},
            },
        ],
    }
    assert msg.anymail_status.status == {"queued"}


@pytest.mark.parametrize("key", ["batch_send_mode", "batch-send-mode"])
def test_use_bulk_email_sends_one_message_per_to(mailersend, http, key):
    accept_bulk(http)
    msg = message(
        to=["alice@example.com", "Bob <bob@example.com>"],
        cc=["cc@example.com"],
        template_id="vzq12345678",
        merge_data={"alice@example.com": {"name": "Alice"}},
        merge_global_data={"ship_date": "May 15"},
        esp_extra={key: "use-bulk-email", "settings": {"track_content": False}},
    )
    msg.send()

    request = http.calls[0].request
    assert request.url == BULK_EMAIL_URL
    assert request.headers["Authorization"] == f"Bearer {API_TOKEN}"
    common = {
        "from": {"email": "from@example.com"},
        "cc": [{"email": "cc@example.com"}],
        "subject": "Subject",
        "text": "Text body",
        "template_id": "vzq12345678",
        "settings": {"track_content": False},
    }
    assert request_json(http.calls[0]) == [
        {
            **common,
            "to": [{"email": "alice@example.com"}],
            "personalization": [
                {"email": "alice@example.com", "data": {"ship_date": "May 15", "name": "Alice"}}
            ],
        },
        {
            **common,
            "to": [{"email": "bob@example.com", "name": "Bob"}],
            "personalization": [{"email": "bob@example.com", "data": {"ship_date": "May 15"}}],
        },
    ]


def test_bulk_email_status_is_unknown_with_the_bulk_id(settings, use_backend, http):
    settings.ANYMAIL = {
        "MAILERSEND_API_TOKEN": API_TOKEN,
        "MAILERSEND_BATCH_SEND_MODE": "use-bulk-email",
    }
    use_backend(BACKEND)
    accept_bulk(http)
    msg = message(to=["alice@example.com", "bob@example.com"], merge_data={})
    msg.send()

    bulk_id = f"bulk:{BULK_EMAIL_ID}"
    assert msg.anymail_status.status == {"unknown"}
    assert msg.anymail_status.message_id == bulk_id
    assert_recorded(
        status="unknown",
        esp="mailersend",
        recipients={
            "alice@example.com": ("unknown", bulk_id),
            "bob@example.com": ("unknown", bulk_id),
        },
    )


def test_invalid_batch_send_mode_setting_names_the_setting(settings, use_backend):
    settings.ANYMAIL = {"MAILERSEND_API_TOKEN": API_TOKEN, "MAILERSEND_BATCH_SEND_MODE": "bulk"}
    use_backend(BACKEND)
    with pytest.raises(AnymailConfigurationError, match="MAILERSEND_BATCH_SEND_MODE"):
        message().send()


# Warnings in the 202 answer


def test_some_suppressed_recipients_are_rejected(mailersend, http):
    accept(
        http,
        json={
            "message": "There are some warnings for your request.",
            "warnings": [
                {
                    "type": "SOME_SUPPRESSED",
                    "warning": "Some of the recipients have been suppressed.",
                    "recipients": [
                        {"email": "Bounced@Example.com", "name": None, "reasons": ["hard_bounced"]}
                    ],
                }
            ],
        },
    )
    msg = message(to=["ok@example.com", "bounced@example.com"])
    msg.send()

    assert msg.anymail_status.status == {"queued", "rejected"}
    assert_recorded(
        status="sent",
        esp="mailersend",
        recipients={
            "ok@example.com": ("queued", MESSAGE_ID),
            "bounced@example.com": ("rejected", ""),
        },
    )


def test_all_suppressed_is_refused_and_recorded_rejected(mailersend, http):
    accept(
        http,
        message_id=None,
        json={
            "message": "There are some warnings for your request.",
            "warnings": [
                {
                    "type": "ALL_SUPPRESSED",
                    "warning": "All of the recipients have been suppressed.",
                    "recipients": [
                        {"email": "to@example.com", "name": None, "reasons": ["unsubscribed"]}
                    ],
                }
            ],
        },
    )
    msg = message()
    with pytest.raises(AnymailRecipientsRefused):
        msg.send()
    assert msg.anymail_status.status == {"rejected"}
    assert_recorded(
        status="rejected", esp="mailersend", recipients={"to@example.com": ("rejected", "")}
    )


def test_paused_sending_still_counts_as_queued(mailersend, http):
    # MailerSend holds the message while the account's sending is paused.
    accept(http, headers={"X-Send-Paused": "true"})
    msg = message()
    msg.send()
    assert msg.anymail_status.status == {"queued"}
    assert msg.anymail_status.esp_response.headers["X-Send-Paused"] == "true"


# Unsupported features


@pytest.mark.parametrize(
    ("attrs", "feature"),
    [
        ({"metadata": {"user_id": "1"}}, "metadata"),
        ({"merge_metadata": {"to@example.com": {"a": 1}}}, "merge_metadata"),
        ({"merge_headers": {"to@example.com": {"X-A": "1"}}}, "merge_headers"),
        ({"envelope_sender": "bounces@example.com"}, "envelope_sender"),
        ({"reply_to": ["one@example.com", "two@example.com"]}, "multiple reply_to addresses"),
        ({"tags": ["1", "2", "3", "4", "5", "6"]}, "more than 5 tags"),
    ],
)
def test_unsupported_feature_raises_naming_it(mailersend, http, attrs, feature):
    with pytest.raises(AnymailUnsupportedFeature, match=f"MailerSend does not support {feature}"):
        message(**attrs).send()
    assert not Message.objects.exists()


def test_amp_body_is_unsupported(mailersend, http):
    msg = message()
    msg.attach_alternative("<html amp4email>...</html>", "text/x-amp-html")
    with pytest.raises(AnymailUnsupportedFeature, match="AMP-HTML body"):
        msg.send()


def test_ignored_unsupported_features_send_what_mailersend_can(settings, use_backend, http):
    settings.ANYMAIL = {"MAILERSEND_API_TOKEN": API_TOKEN, "IGNORE_UNSUPPORTED_FEATURES": True}
    use_backend(BACKEND)
    accept(http)
    message(
        reply_to=["one@example.com", "two@example.com"],
        tags=["1", "2", "3", "4", "5", "6"],
        metadata={"user_id": "1"},
    ).send()
    body = sent_json(http)
    assert body["reply_to"] == {"email": "one@example.com"}
    assert body["tags"] == ["1", "2", "3", "4", "5"]
    assert "metadata" not in body


# Configuration


def test_missing_api_token_names_the_setting(settings, use_backend):
    settings.ANYMAIL = {}
    use_backend(BACKEND)
    with pytest.raises(AnymailConfigurationError, match="MAILERSEND_API_TOKEN"):
        message().send()


def test_bare_api_token_setting_is_accepted(settings, use_backend, http):
    settings.ANYMAIL = {}
    settings.MAILERSEND_API_TOKEN = "mlsn.bare-setting"
    use_backend(BACKEND)
    accept(http)
    message().send()
    assert http.calls[0].request.headers["Authorization"] == "Bearer mlsn.bare-setting"


# Errors


def test_unauthenticated_is_an_api_error(mailersend, http):
    http.post(EMAIL_URL, status=401, json={"message": "Unauthenticated."})
    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()
    error = excinfo.value
    assert isinstance(error, requests.HTTPError)
    assert error.status_code == 401
    assert "Unauthenticated." in str(error)
    assert_recorded(status="failed", esp="mailersend", error_contains="Unauthenticated.")


def test_validation_error_is_an_api_error_with_mailersend_text(mailersend, http):
    http.post(
        EMAIL_URL,
        status=422,
        json={
            "message": "The given data was invalid.",
            "errors": {"from.email": ["The from.email domain must be verified in your account."]},
        },
    )
    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()
    assert excinfo.value.status_code == 422
    assert "The from.email domain must be verified" in str(excinfo.value)
    assert_recorded(
        status="failed", esp="mailersend", error_contains="from.email domain must be verified"
    )


def test_rate_limit_is_an_api_error_with_retry_after(mailersend, http):
    http.post(
        EMAIL_URL,
        status=429,
        json={"message": "Too Many Attempts."},
        headers={"Retry-After": "58"},
    )
    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()
    assert excinfo.value.status_code == 429
    assert excinfo.value.response.headers["retry-after"] == "58"
    assert_recorded(status="failed", esp="mailersend", error_contains="Too Many Attempts.")


def test_server_error_is_an_api_error(mailersend, http):
    http.post(EMAIL_URL, status=500, json={"message": "Server Error"})
    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()
    assert excinfo.value.status_code == 500
    assert_recorded(status="failed", esp="mailersend", error_contains="Server Error")


def test_non_json_success_body_is_an_api_error(mailersend, http):
    http.post(EMAIL_URL, status=202, body="<html>oops</html>", headers={"X-Message-Id": "abc"})
    with pytest.raises(AnymailAPIError, match="Invalid JSON in MailerSend API response"):
        message().send()
    assert_recorded(status="failed", esp="mailersend", error_contains="Invalid JSON")


def test_success_without_message_id_is_an_api_error(mailersend, http):
    accept(http, message_id=None)
    with pytest.raises(AnymailAPIError, match="No X-Message-Id"):
        message().send()
    assert_recorded(status="failed", esp="mailersend", error_contains="No X-Message-Id")


def test_bulk_email_answer_without_bulk_id_is_an_api_error(settings, use_backend, http):
    settings.ANYMAIL = {
        "MAILERSEND_API_TOKEN": API_TOKEN,
        "MAILERSEND_BATCH_SEND_MODE": "use-bulk-email",
    }
    use_backend(BACKEND)
    http.post(BULK_EMAIL_URL, status=202, json={"message": "The bulk email is being processed."})
    with pytest.raises(AnymailAPIError, match="No bulk_email_id"):
        message(to=["a@example.com", "b@example.com"], merge_data={}).send()


@pytest.mark.parametrize("error", [requests.ConnectionError("refused"), requests.Timeout("slow")])
def test_connection_errors_are_api_errors(mailersend, http, error):
    http.post(EMAIL_URL, body=error)
    with pytest.raises(AnymailAPIError, match=f"Error posting to {EMAIL_URL}"):
        message().send()
    assert_recorded(status="failed", esp="mailersend", error_contains=type(error).__name__)


# Recording off


def test_recording_off_sends_without_touching_the_database(
    mailersend, http, no_store, django_assert_num_queries
):
    accept(http)
    msg = message()
    with django_assert_num_queries(0):
        msg.send()
    assert msg.anymail_status.status == {"queued"}
    assert not Message.objects.exists()
