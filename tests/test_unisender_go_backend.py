"""Unisender Go backend: the exact email/send request, response parsing, errors."""

from datetime import datetime, timedelta, timezone

import pytest
import requests
import responses
from django.core.mail import send_mail

from sending.exceptions import (
    AnymailAPIError,
    AnymailConfigurationError,
    AnymailRecipientsRefused,
    AnymailUnsupportedFeature,
)
from sending.message import AnymailMessage
from tests.conftest import make_backend
from tests.helpers import assert_recorded, request_json

pytestmark = pytest.mark.django_db

BACKEND = "sending.backends.unisender_go.EmailBackend"
API_BASE = "https://go1.unisender.ru/ru/transactional/api/v1/"
API_URL = API_BASE + "email/send.json"
API_KEY = "fake-unisender-go-api-key"
JOB_ID = "1ZymBc-00041N-9X"


@pytest.fixture
def unisender_go(settings, use_backend):
    settings.ANYMAIL = {"UNISENDER_GO_API_KEY": API_KEY, "UNISENDER_GO_API_URL": API_BASE}
    use_backend(BACKEND)


def success(emails, failed_emails=None):
    body = {"status": "success", "job_id": JOB_ID, "emails": list(emails)}
    if failed_emails is not None:
        body["failed_emails"] = failed_emails
    return body


def add_success(http, *emails, failed_emails=None):
    http.add(responses.POST, API_URL, json=success(emails, failed_emails), status=200)


def add_error(http, status, code, text):
    http.add(
        responses.POST,
        API_URL,
        status=status,
        json={"status": "error", "message": text, "code": code},
    )


def message(**kwargs):
    defaults = {
        "subject": "Subject here",
        "body": "Text body here",
        "from_email": "from@example.com",
        "to": ["to@example.com"],
    }
    return AnymailMessage(**{**defaults, **kwargs})


# Requests


def test_plain_send_posts_exact_request(unisender_go, http):
    add_success(http, "to@example.com")

    sent = send_mail("Subject here", "Text body here", "from@example.com", ["to@example.com"])

    assert sent == 1
    request = http.calls[0].request
    assert request.method == "POST"
    assert request.url == API_URL
    assert request.headers["X-API-KEY"] == API_KEY
    assert request.headers["Content-Type"] == "application/json"
    assert request_json(http.calls[0]) == {
        "message": {
            "from_email": "from@example.com",
            "subject": "Subject here",
            "recipients": [{"email": "to@example.com"}],
            "body": {"plaintext": "Text body here"},
        }
    }


def test_full_featured_message_body(unisender_go, http):
    add_success(http, "to@example.com", "to2@example.com", "cc@example.com", "bcc@example.com")
    msg = message(
        from_email="Sender <from@example.com>",
        to=["Recipient <to@example.com>", "to2@example.com"],
        cc=["cc@example.com"],
        bcc=["bcc@example.com"],
        reply_to=["Help Desk <help@example.com>"],
        headers={"X-Custom": "custom value"},
        tags=["welcome", "onboarding"],
        metadata={"user_id": "12345"},
        track_clicks=False,
        track_opens=True,
        send_at=datetime(2025, 6, 1, 14, 30, 15, 500, tzinfo=timezone(timedelta(hours=3))),
        merge_global_data={"product": "Widget"},
        esp_extra={"global_language": "en", "options": {"unsubscribe_url": "https://x.test/u"}},
    )
    msg.attach_alternative("<p>HTML body <img src='cid:logo'></p>", "text/html")
    msg.attach_alternative("<html amp4email></html>", "text/x-amp-html")
    msg.attach("invoice.pdf", b"%PDF-1.4 fake", "application/pdf")
    cid = msg.attach_inline_image(b"GIF89a fake", filename="logo.gif")

    msg.send()

    assert request_json(http.calls[0]) == {
        "message": {
            "from_email": "from@example.com",
            "from_name": "Sender",
            "subject": "Subject here",
            "reply_to": "help@example.com",
            "reply_to_name": "Help Desk",
            "recipients": [
                {"email": "to@example.com"},
                {"email": "to2@example.com"},
                {"email": "cc@example.com"},
                {"email": "bcc@example.com"},
            ],
            "headers": {
                "X-Custom": "custom value",
                "To": "Recipient <to@example.com>, to2@example.com",
                "CC": "cc@example.com",
            },
            "body": {
                "plaintext": "Text body here",
                "html": "<p>HTML body <img src='cid:logo'></p>",
                "amp": "<html amp4email></html>",
            },
            "attachments": [
                {
                    "type": "application/pdf",
                    "name": "invoice.pdf",
                    "content": "JVBERi0xLjQgZmFrZQ==",
                }
            ],
            "inline_attachments": [
                {"type": "image/gif", "name": cid, "content": "R0lGODlhIGZha2U="}
            ],
            "global_metadata": {"user_id": "12345"},
            "tags": ["welcome", "onboarding"],
            "track_links": 0,
            "track_read": 1,
            "global_substitutions": {"product": "Widget"},
            "global_language": "en",
            "options": {"send_at": "2025-06-01 11:30:15", "unsubscribe_url": "https://x.test/u"},
        }
    }


def test_single_named_recipient_is_named_by_to_name_substitution(unisender_go, http):
    add_success(http, "to@example.com")

    message(to=["Jane Doe <to@example.com>"]).send()

    assert request_json(http.calls[0])["message"]["recipients"] == [
        {"email": "to@example.com", "substitutions": {"to_name": "Jane Doe"}}
    ]


def test_bcc_alone_with_one_to_still_sends_to_header(unisender_go, http):
    add_success(http, "to@example.com", "bcc@example.com")

    message(bcc=["bcc@example.com"]).send()

    body = request_json(http.calls[0])["message"]
    assert body["headers"] == {"To": "to@example.com"}
    assert body["recipients"] == [{"email": "to@example.com"}, {"email": "bcc@example.com"}]


def test_batch_send_gives_each_recipient_its_data(unisender_go, http):
    add_success(http, "alice@example.com", "bob@example.com")
    msg = message(
        to=["Alice Smith <alice@example.com>", "bob@example.com"],
        merge_data={
            "alice@example.com": {"order": "A1"},
            "bob@example.com": {"order": "B2", "to_name": "Robert"},
        },
        merge_global_data={"shop": "Example Shop"},
        merge_metadata={"alice@example.com": {"customer": "1"}},
        metadata={"campaign": "june"},
    )

    msg.send()

    body = request_json(http.calls[0])["message"]
    assert "headers" not in body  # each recipient sees only their own address
    assert body["recipients"] == [
        {
            "email": "alice@example.com",
            "substitutions": {"to_name": "Alice Smith", "order": "A1"},
            "metadata": {"customer": "1"},
        },
        {"email": "bob@example.com", "substitutions": {"order": "B2", "to_name": "Robert"}},
    ]
    assert body["global_substitutions"] == {"shop": "Example Shop"}
    assert body["global_metadata"] == {"campaign": "june"}
    assert_recorded(
        status="sent",
        esp="unisender_go",
        recipients={
            "alice@example.com": ("queued", JOB_ID),
            "bob@example.com": ("queued", JOB_ID),
        },
    )


def test_stored_template_send(unisender_go, http):
    add_success(http, "to@example.com")
    msg = AnymailMessage(
        from_email="from@example.com",
        to=["to@example.com"],
        template_id="f6d4e7a0-0d0e-11ef-9a57-aa1bd7e4e8a2",
        merge_global_data={"name": "Jane"},
    )

    msg.send()

    assert request_json(http.calls[0]) == {
        "message": {
            "from_email": "from@example.com",
            "recipients": [{"email": "to@example.com"}],
            "template_id": "f6d4e7a0-0d0e-11ef-9a57-aa1bd7e4e8a2",
            "global_substitutions": {"name": "Jane"},
        }
    }


def test_api_url_without_trailing_slash(settings, use_backend, http):
    settings.ANYMAIL = {
        "UNISENDER_GO_API_KEY": API_KEY,
        "UNISENDER_GO_API_URL": "https://go2.unisender.ru/ru/transactional/api/v1",
    }
    use_backend(BACKEND)
    url = "https://go2.unisender.ru/ru/transactional/api/v1/email/send.json"
    http.add(responses.POST, url, json=success(["to@example.com"]))

    message().send()

    assert http.calls[0].request.url == url


def test_bare_api_key_setting_is_accepted(settings, use_backend, http):
    settings.ANYMAIL = {"UNISENDER_GO_API_URL": API_BASE}
    settings.UNISENDER_GO_API_KEY = "bare-fake-key"
    use_backend(BACKEND)
    add_success(http, "to@example.com")

    message().send()

    assert http.calls[0].request.headers["X-API-KEY"] == "bare-fake-key"


def test_api_key_is_not_in_the_request_body(unisender_go, http):
    add_success(http, "to@example.com")

    message().send()

    assert "api_key" not in request_json(http.calls[0])


# Response parsing and recording


def test_accepted_recipients_are_queued_with_job_id(unisender_go, http):
    add_success(http, "to@example.com", "cc@example.com")
    msg = message(cc=["cc@example.com"])

    msg.send()

    assert msg.anymail_status.status == {"queued"}
    assert msg.anymail_status.message_id == JOB_ID
    assert_recorded(
        status="sent",
        esp="unisender_go",
        recipients={"to@example.com": ("queued", JOB_ID), "cc@example.com": ("queued", JOB_ID)},
    )


def test_failed_emails_are_invalid_or_rejected(unisender_go, http):
    add_success(
        http,
        "to@example.com",
        failed_emails={
            "bad@address": "invalid",
            "old@example.net": "unsubscribed",
            "full@example.org": "temporary_unavailable",
        },
    )
    msg = message(
        to=["to@example.com", "bad@address", "old@example.net", "full@example.org"],
    )

    msg.send()

    assert_recorded(
        status="sent",
        esp="unisender_go",
        recipients={
            "to@example.com": ("queued", JOB_ID),
            "bad@address": ("invalid", ""),
            "old@example.net": ("rejected", ""),
            "full@example.org": ("rejected", ""),
        },
    )


def test_response_addresses_match_case_insensitively(unisender_go, http):
    add_success(http, "to@example.com")
    msg = message(to=["To@Example.COM"])

    msg.send()

    assert msg.anymail_status.recipients["To@Example.COM"].status == "queued"


def test_recipient_missing_from_response_is_unknown(unisender_go, http):
    add_success(http, "to@example.com")
    msg = message(to=["to@example.com", "other@example.com"])

    msg.send()

    assert msg.anymail_status.recipients["other@example.com"].status == "unknown"


def test_every_recipient_refused_raises_recipients_refused(unisender_go, http):
    add_success(http, failed_emails={"to@example.com": "permanent_unavailable"})

    with pytest.raises(AnymailRecipientsRefused):
        message().send()
    assert_recorded(status="rejected", esp="unisender_go")


def test_error_status_in_a_200_body_is_an_api_error(unisender_go, http):
    http.add(
        responses.POST,
        API_URL,
        status=200,
        json={"status": "error", "message": "An unknown internal error occurred", "code": 150},
    )

    with pytest.raises(AnymailAPIError, match="did not succeed"):
        message().send()
    assert_recorded(
        status="failed", esp="unisender_go", error_contains="An unknown internal error occurred"
    )


def test_response_without_status_is_an_api_error(unisender_go, http):
    http.add(responses.POST, API_URL, json=["to@example.com"])

    with pytest.raises(AnymailAPIError, match="Invalid Unisender Go API response format"):
        message().send()


def test_non_json_success_body_is_an_api_error(unisender_go, http):
    http.add(responses.POST, API_URL, body="OK", status=200)

    with pytest.raises(AnymailAPIError, match="Invalid JSON in Unisender Go API response"):
        message().send()
    assert_recorded(status="failed", esp="unisender_go", error_contains="Invalid JSON")


def test_no_store_sends_without_touching_the_database(
    unisender_go, no_store, http, django_assert_num_queries
):
    add_success(http, "to@example.com")
    msg = message()

    with django_assert_num_queries(0):
        msg.send()

    assert msg.anymail_status.message_id == JOB_ID


# Errors


def test_validation_error_text_reaches_caller_and_record(unisender_go, http):
    add_error(http, 400, 206, "Sender email is not verified")

    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()

    assert excinfo.value.status_code == 400
    assert isinstance(excinfo.value, requests.HTTPError)
    assert "Sender email is not verified" in str(excinfo.value)
    assert_recorded(
        status="failed",
        esp="unisender_go",
        error_contains="Sender email is not verified",
        recipients={"to@example.com": ("failed", "")},
    )


def test_all_recipients_failed_error_204(unisender_go, http):
    add_error(http, 400, 204, "Email recipients passed improperly")

    with pytest.raises(AnymailAPIError, match="Email recipients passed improperly"):
        message().send()


def test_authentication_failure_is_an_api_error(unisender_go, http):
    add_error(http, 401, 102, "Invalid key")

    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()

    assert excinfo.value.status_code == 401
    assert API_KEY not in str(excinfo.value)
    assert_recorded(status="failed", esp="unisender_go", error_contains="Invalid key")


def test_forbidden_is_an_api_error(unisender_go, http):
    add_error(http, 403, 215, "User is not allowed to send")

    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()

    assert excinfo.value.status_code == 403
    assert "User is not allowed to send" in str(excinfo.value)


def test_rate_limit_is_an_api_error(unisender_go, http):
    add_error(http, 429, 1025, "Too many requests, please slow down")

    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()

    assert excinfo.value.status_code == 429
    assert_recorded(status="failed", esp="unisender_go", error_contains="Too many requests")


def test_server_error_is_an_api_error(unisender_go, http):
    add_error(http, 500, 150, "An unknown internal error occurred")

    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()

    assert excinfo.value.status_code == 500
    assert_recorded(
        status="failed", esp="unisender_go", error_contains="An unknown internal error occurred"
    )


@pytest.mark.parametrize("error", [requests.ConnectionError("refused"), requests.Timeout("slow")])
def test_connection_problems_are_api_errors(unisender_go, http, error):
    http.add(responses.POST, API_URL, body=error)

    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()

    assert isinstance(excinfo.value.__cause__, type(error))
    assert_recorded(status="failed", esp="unisender_go", error_contains=API_URL)


# Settings


def test_missing_api_key_names_the_setting(settings):
    settings.ANYMAIL = {"UNISENDER_GO_API_URL": API_BASE}

    with pytest.raises(AnymailConfigurationError, match="UNISENDER_GO_API_KEY"):
        make_backend(BACKEND)


def test_missing_api_url_names_the_setting(settings):
    settings.ANYMAIL = {"UNISENDER_GO_API_KEY": API_KEY}

    with pytest.raises(AnymailConfigurationError, match="UNISENDER_GO_API_URL"):
        make_backend(BACKEND)


# Unsupported and limited features


def test_envelope_sender_is_unsupported(unisender_go, http):
    with pytest.raises(AnymailUnsupportedFeature, match="envelope_sender"):
        message(envelope_sender="bounces@example.com").send()
    assert len(http.calls) == 0


def test_merge_headers_are_unsupported(unisender_go, http):
    with pytest.raises(AnymailUnsupportedFeature, match="merge_headers"):
        message(merge_headers={"to@example.com": {"X-Id": "1"}}).send()
    assert len(http.calls) == 0


def test_multiple_reply_to_addresses_are_unsupported(unisender_go, http):
    with pytest.raises(AnymailUnsupportedFeature, match="multiple reply_to"):
        message(reply_to=["a@example.com", "b@example.com"]).send()
    assert len(http.calls) == 0


def test_ignored_unsupported_features_send_what_unisender_go_takes(settings, use_backend, http):
    settings.ANYMAIL = {
        "UNISENDER_GO_API_KEY": API_KEY,
        "UNISENDER_GO_API_URL": API_BASE,
        "IGNORE_UNSUPPORTED_FEATURES": True,
    }
    use_backend(BACKEND)
    add_success(http, "to@example.com")

    message(
        reply_to=["a@example.com", "b@example.com"], envelope_sender="bounces@example.com"
    ).send()

    body = request_json(http.calls[0])["message"]
    assert body["reply_to"] == "a@example.com"
    assert "return_path" not in body and "envelope_sender" not in body
