"""The Mailgun backend: the exact Messages API request, response parsing, errors and recording."""

import base64
import json
from datetime import UTC, datetime
from email.mime.image import MIMEImage
from email.mime.text import MIMEText

import pytest
import requests
from django.core import mail
from django.core.mail import EmailMessage, send_mail

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
from tests.helpers import assert_recorded, request_multipart

pytestmark = pytest.mark.django_db

BACKEND = "sending.backends.mailgun.EmailBackend"
API_KEY = "key-test-not-a-real-key"
MESSAGES_URL = "https://api.mailgun.net/v3/example.com/messages"
MAILGUN_ID = "<20260304050607.1.ABCDEF0123456789@example.com>"
# The shape Mailgun answers a send with (Messages API reference)
QUEUED = {"id": MAILGUN_ID, "message": "Queued. Thank you."}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16  # enough for MIMEImage to see a PNG


@pytest.fixture
def mailgun(settings, use_backend):
    """Mailgun as the default email backend, configured the way users do."""
    settings.ANYMAIL = {"MAILGUN_API_KEY": API_KEY}
    use_backend(BACKEND)
    return settings


def queued(http, url=MESSAGES_URL, **kwargs):
    """Answer the next POST to url the way Mailgun accepts a message."""
    kwargs.setdefault("json", QUEUED)
    http.post(url, **kwargs)


def sent_form(http):
    """(fields, files) of the one request sent."""
    assert len(http.calls) == 1
    return request_multipart(http.calls[0])


def sent_fields(http) -> dict:
    """The sent form fields as {name: [values]}."""
    fields, _files = sent_form(http)
    by_name = {}
    for name, value in fields:
        by_name.setdefault(name, []).append(value)
    return by_name


def recipient_variables(http) -> dict:
    (value,) = sent_fields(http)["recipient-variables"]
    return json.loads(value)


def message(**kwargs) -> AnymailMessage:
    kwargs.setdefault("subject", "Subject")
    kwargs.setdefault("body", "Body")
    kwargs.setdefault("from_email", "from@example.com")
    kwargs.setdefault("to", ["to@example.com"])
    return AnymailMessage(**kwargs)


# The request


def test_send_mail_posts_multipart_form_with_basic_auth(mailgun, http):
    queued(http)

    send_mail("Subject", "Body", "from@example.com", ["to@example.com"])

    request = http.calls[0].request
    assert request.method == "POST"
    assert request.url == MESSAGES_URL
    expected_auth = base64.b64encode(f"api:{API_KEY}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected_auth}"
    assert request.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert sent_form(http) == (
        [
            ("from", "from@example.com"),
            ("to", "to@example.com"),
            ("subject", "Subject"),
            ("text", "Body"),
        ],
        [],
    )


def test_success_marks_every_recipient_queued_with_mailgun_id(mailgun, http):
    queued(http)
    msg = message(to=["to@example.com"], cc=["cc@example.com"], bcc=["bcc@example.com"])

    assert msg.send() == 1

    assert msg.anymail_status.status == {"queued"}
    assert msg.anymail_status.message_id == MAILGUN_ID
    assert msg.anymail_status.recipients["cc@example.com"].status == "queued"
    assert msg.anymail_status.esp_response.json() == QUEUED
    assert_recorded(
        status="sent",
        esp="mailgun",
        recipients={
            "to@example.com": ("queued", MAILGUN_ID),
            "cc@example.com": ("queued", MAILGUN_ID),
            "bcc@example.com": ("queued", MAILGUN_ID),
        },
    )


def test_full_featured_message(mailgun, http):
    queued(http)
    msg = AnymailMessage(
        subject="Hello",
        body="Text body",
        from_email='"Sender, Inc." <from@example.com>',
        to=["Alice <alice@example.com>", "bob@example.com"],
        cc=["cc@example.com"],
        bcc=["bcc@example.com"],
        reply_to=["reply@example.com", "Help Desk <help@example.com>"],
        headers={"X-Custom": "custom value", "List-Unsubscribe": "<mailto:unsub@example.com>"},
        tags=["receipt", "welcome"],
        metadata={"user_id": "12345", "cart": {"items": 2}},
        track_clicks=True,
        track_opens=False,
        send_at=datetime(2031, 3, 4, 5, 6, 7, tzinfo=UTC),
        esp_extra={"o:testmode": "yes"},
    )
    msg.attach_alternative("<p>HTML body <img src='cid:logo'></p>", "text/html")
    msg.attach("report.pdf", b"%PDF-1.4 report", "application/pdf")
    cid = msg.attach_inline_image(PNG, filename="logo.png")

    msg.send()

    fields, files = sent_form(http)
    assert fields == [
        ("from", '"Sender, Inc." <from@example.com>'),
        ("to", "Alice <alice@example.com>"),
        ("to", "bob@example.com"),
        ("cc", "cc@example.com"),
        ("bcc", "bcc@example.com"),
        ("subject", "Hello"),
        ("text", "Text body"),
        ("html", "<p>HTML body <img src='cid:logo'></p>"),
        ("o:deliverytime", "Tue, 04 Mar 2031 05:06:07 +0000"),
        ("o:tag", "receipt"),
        ("o:tag", "welcome"),
        ("o:tracking-clicks", "yes"),
        ("o:tracking-opens", "no"),
        ("h:Reply-To", "reply@example.com, Help Desk <help@example.com>"),
        ("h:X-Custom", "custom value"),
        ("h:List-Unsubscribe", "<mailto:unsub@example.com>"),
        ("v:user_id", "12345"),
        ("v:cart", '{"items": 2}'),
        ("o:testmode", "yes"),
    ]
    assert files == [
        ("attachment", "report.pdf", "application/pdf", b"%PDF-1.4 report"),
        # Mailgun uses an inline file's filename as its Content-ID
        ("inline", cid, "image/png", PNG),
    ]


def test_html_only_message_sends_html_field(mailgun, http):
    queued(http)
    msg = message(body="<p>Hi</p>")
    msg.content_subtype = "html"

    msg.send()

    fields = sent_fields(http)
    assert fields["html"] == ["<p>Hi</p>"]
    assert "text" not in fields


def test_amp_alternative_sends_amp_html(mailgun, http):
    queued(http)
    msg = message()
    msg.attach_alternative("<!doctype html><html ⚡4email></html>", "text/x-amp-html")

    msg.send()

    assert sent_fields(http)["amp-html"] == ["<!doctype html><html ⚡4email></html>"]


def test_non_ascii_fields_are_sent_as_utf8(mailgun, http):
    queued(http)

    message(subject="Grüße ☃", body="Ünïcode", to=["José <jose@example.com>"]).send()

    fields = sent_fields(http)
    assert fields["subject"] == ["Grüße ☃"]
    assert fields["text"] == ["Ünïcode"]
    assert fields["to"] == ["=?utf-8?b?Sm9zw6k=?= <jose@example.com>"]  # RFC 2047


# Sender domain and API URL


def test_sender_domain_setting_chooses_the_api_path(mailgun, http):
    mailgun.ANYMAIL = {**mailgun.ANYMAIL, "MAILGUN_SENDER_DOMAIN": "mg.example.net"}
    queued(http, "https://api.mailgun.net/v3/mg.example.net/messages")

    message().send()

    assert sent_fields(http)["from"] == ["from@example.com"]


def test_envelope_sender_domain_overrides_sender_domain_setting(mailgun, http):
    mailgun.ANYMAIL = {**mailgun.ANYMAIL, "MAILGUN_SENDER_DOMAIN": "mg.example.net"}
    queued(http, "https://api.mailgun.net/v3/bounces.example.org/messages")

    message(envelope_sender="anything@bounces.example.org").send()

    # Only the domain is used: Mailgun sets the Return-Path itself
    assert not any("anything" in value for _name, value in sent_form(http)[0])


def test_esp_extra_sender_domain_overrides_envelope_sender_and_is_not_a_field(mailgun, http):
    queued(http, "https://api.mailgun.net/v3/mg2.example.com/messages")

    message(
        envelope_sender="bounce@bounces.example.org",
        esp_extra={"sender_domain": "mg2.example.com", "o:testmode": "yes"},
    ).send()

    fields = sent_fields(http)
    assert "sender_domain" not in fields
    assert fields["o:testmode"] == ["yes"]


def test_sender_domain_is_quoted_into_the_path(mailgun, http):
    queued(http, "https://api.mailgun.net/v3/mg.example.com%2F..%2Fdomains/messages")

    message(esp_extra={"sender_domain": "mg.example.com/../domains"}).send()

    assert http.calls[0].request.url.endswith("/v3/mg.example.com%2F..%2Fdomains/messages")


@pytest.mark.parametrize(
    "api_url",
    [
        "https://api.eu.mailgun.net/v3",
        "https://api.eu.mailgun.net/v3/",
        "https://api.eu.mailgun.net",
        "https://api.eu.mailgun.net/",
    ],
)
def test_api_url_setting_selects_eu_region(mailgun, http, api_url):
    mailgun.ANYMAIL = {**mailgun.ANYMAIL, "MAILGUN_API_URL": api_url}
    queued(http, "https://api.eu.mailgun.net/v3/example.com/messages")

    message().send()

    assert http.calls[0].request.url == "https://api.eu.mailgun.net/v3/example.com/messages"


# Settings


def test_missing_api_key_names_the_setting(settings):
    settings.ANYMAIL = {}

    with pytest.raises(AnymailConfigurationError, match="MAILGUN_API_KEY"):
        make_backend(BACKEND)


def test_bare_mailgun_api_key_setting_is_used(settings, use_backend, http):
    settings.ANYMAIL = {}
    settings.MAILGUN_API_KEY = "key-bare-setting"
    use_backend(BACKEND)
    queued(http)

    message().send()

    expected_auth = base64.b64encode(b"api:key-bare-setting").decode()
    assert http.calls[0].request.headers["Authorization"] == f"Basic {expected_auth}"


def test_connection_options_override_settings(mailgun, http):
    queued(http, "https://api.eu.mailgun.net/v3/mg.example.com/messages")
    connection = make_backend(
        BACKEND,
        api_key="key-from-connection",
        sender_domain="mg.example.com",
        api_url="https://api.eu.mailgun.net/v3/",
    )

    message(connection=connection).send()

    expected_auth = base64.b64encode(b"api:key-from-connection").decode()
    assert http.calls[0].request.headers["Authorization"] == f"Basic {expected_auth}"


# Tags, metadata, tracking, esp_extra


def test_more_than_three_tags_is_unsupported(mailgun, http):
    with pytest.raises(AnymailUnsupportedFeature, match="more than 3 tags"):
        message(tags=["one", "two", "three", "four"]).send()


def test_more_than_three_tags_sends_the_first_three_when_ignored(mailgun, http):
    mailgun.ANYMAIL = {**mailgun.ANYMAIL, "IGNORE_UNSUPPORTED_FEATURES": True}
    queued(http)

    message(tags=["one", "two", "three", "four"]).send()

    assert sent_fields(http)["o:tag"] == ["one", "two", "three"]


def test_metadata_values_that_are_not_strings_are_json(mailgun, http):
    queued(http)

    message(metadata={"count": 3, "flag": True, "name": "Ann", "ids": [1, 2]}).send()

    fields = sent_fields(http)
    assert fields["v:count"] == ["3"]
    assert fields["v:flag"] == ["true"]
    assert fields["v:name"] == ["Ann"]
    assert fields["v:ids"] == ["[1, 2]"]


def test_unserializable_metadata_raises_serialization_error(mailgun, http):
    with pytest.raises(AnymailSerializationError, match="Mailgun"):
        message(metadata={"when": datetime(2031, 1, 1, tzinfo=UTC)}).send()
    assert not http.calls


def test_tracking_off_sends_no(mailgun, http):
    queued(http)

    message(track_clicks=False, track_opens=False).send()

    fields = sent_fields(http)
    assert fields["o:tracking-clicks"] == ["no"]
    assert fields["o:tracking-opens"] == ["no"]


def test_esp_extra_replaces_fields_converts_values_and_removes_none(mailgun, http):
    queued(http)

    message(
        tags=["from-tags"],
        track_clicks=True,
        esp_extra={
            "o:tag": ["extra-1", "extra-2"],
            "o:tracking": False,
            "o:tracking-clicks": None,
            "o:sending-ip-pool": 42,
            "t:variables": {"a": 1},
        },
    ).send()

    fields = sent_fields(http)
    assert fields["o:tag"] == ["extra-1", "extra-2"]
    assert fields["o:tracking"] == ["no"]
    assert "o:tracking-clicks" not in fields
    assert fields["o:sending-ip-pool"] == ["42"]
    assert fields["t:variables"] == ['{"a": 1}']


def test_send_defaults_esp_extra_applies(mailgun, http):
    mailgun.ANYMAIL = {**mailgun.ANYMAIL, "MAILGUN_SEND_DEFAULTS": {"esp_extra": {"o:dkim": "no"}}}
    queued(http)

    message().send()

    assert sent_fields(http)["o:dkim"] == ["no"]


# Attachments


def test_attachment_without_filename_is_unsupported(mailgun, http):
    msg = message()
    msg.attach(MIMEText("no name here"))

    with pytest.raises(AnymailUnsupportedFeature, match="attachments without filenames"):
        msg.send()


def test_inline_attachment_without_content_id_is_unsupported(mailgun, http):
    msg = message()
    image = MIMEImage(PNG, "png")
    image.add_header("Content-Disposition", "inline")
    msg.attach(image)

    with pytest.raises(AnymailUnsupportedFeature, match="inline attachments without Content-ID"):
        msg.send()


def test_attachment_without_filename_is_left_out_when_ignored(mailgun, http):
    mailgun.ANYMAIL = {**mailgun.ANYMAIL, "IGNORE_UNSUPPORTED_FEATURES": True}
    queued(http)
    msg = message()
    msg.attach(MIMEText("no name here"))
    msg.attach("named.txt", "named", "text/plain")

    msg.send()

    assert sent_form(http)[1] == [("attachment", "named.txt", "text/plain", b"named")]


def test_spoofed_to_header_is_unsupported(mailgun, http):
    with pytest.raises(AnymailUnsupportedFeature, match="spoofing `To` header"):
        message(headers={"To": "Someone Else <else@example.com>"}).send()


def test_alternative_of_other_type_is_unsupported(mailgun, http):
    msg = message()
    msg.attach_alternative("BEGIN:VCALENDAR", "text/calendar")

    with pytest.raises(
        AnymailUnsupportedFeature, match="alternative part with type 'text/calendar'"
    ):
        msg.send()


# Batch sending and templates


def test_merge_data_sends_recipient_variables_with_globals_as_defaults(mailgun, http):
    queued(http)
    msg = message(
        subject="Order %recipient.order% ships %recipient.ship_date%",
        to=["Alice <alice@example.com>", "bob@example.com", "carol@example.com"],
        merge_data={
            "alice@example.com": {"name": "Alice", "order": "12345"},
            "bob@example.com": {"name": "Bob", "order": 54321, "ship_date": "May 16"},
        },
        merge_global_data={"ship_date": "May 15"},
    )

    msg.send()

    assert recipient_variables(http) == {
        "alice@example.com": {"name": "Alice", "order": "12345", "ship_date": "May 15"},
        "bob@example.com": {"name": "Bob", "order": 54321, "ship_date": "May 16"},
        "carol@example.com": {"name": "", "order": "", "ship_date": "May 15"},
    }
    # Without a stored template, merge data is not custom data (not metadata)
    assert not any(name.startswith("v:") for name in sent_fields(http))
    assert msg.anymail_status.recipients["carol@example.com"].message_id == MAILGUN_ID


def test_merge_global_data_alone_uses_recipient_variables(mailgun, http):
    queued(http)

    message(to=["a@example.com", "b@example.com"], merge_global_data={"sale": "20%"}).send()

    assert recipient_variables(http) == {
        "a@example.com": {"sale": "20%"},
        "b@example.com": {"sale": "20%"},
    }


def test_empty_merge_data_still_sends_each_to_their_own_message(mailgun, http):
    queued(http)

    message(to=["a@example.com", "b@example.com"], merge_data={}).send()

    assert recipient_variables(http) == {"a@example.com": {}, "b@example.com": {}}


def test_merge_metadata_refers_custom_data_to_recipient_variables(mailgun, http):
    queued(http)

    message(
        to=["a@example.com", "b@example.com"],
        metadata={"campaign": "spring", "user_id": "unknown"},
        merge_metadata={
            "a@example.com": {"user_id": "111", "tier": 1},
            "b@example.com": {"user_id": "222"},
        },
    ).send()

    fields = sent_fields(http)
    assert fields["v:campaign"] == ["spring"]
    assert fields["v:user_id"] == ["%recipient.v:user_id%"]
    assert fields["v:tier"] == ["%recipient.v:tier%"]
    assert recipient_variables(http) == {
        "a@example.com": {"v:user_id": "111", "v:tier": 1},
        "b@example.com": {"v:user_id": "222", "v:tier": ""},
    }


def test_merge_headers_refer_headers_to_recipient_variables(mailgun, http):
    queued(http)

    message(
        to=["a@example.com", "b@example.com"],
        headers={"List-Unsubscribe": "<https://example.com/unsub>", "X-Static": "same"},
        merge_headers={
            "a@example.com": {"List-Unsubscribe": "<https://example.com/unsub/a>"},
            "b@example.com": {
                "list-unsubscribe": "<https://example.com/unsub/b>",
                "X-Tier": "gold",
            },
        },
    ).send()

    fields = sent_fields(http)
    assert fields["h:List-Unsubscribe"] == ["%recipient.h:List-Unsubscribe%"]
    assert fields["h:X-Tier"] == ["%recipient.h:X-Tier%"]
    assert fields["h:X-Static"] == ["same"]
    assert recipient_variables(http) == {
        "a@example.com": {
            "h:List-Unsubscribe": "<https://example.com/unsub/a>",
            "h:X-Tier": "",
        },
        "b@example.com": {
            "h:List-Unsubscribe": "<https://example.com/unsub/b>",
            "h:X-Tier": "gold",
        },
    }


def test_stored_template_sends_global_data_as_template_variables(mailgun, http):
    queued(http)

    message(
        subject=None,  # use the template's
        body="",
        template_id="order-shipped",
        merge_global_data={"name": "Ann", "items": [{"sku": "A1"}]},
        metadata={"order": "42"},
        esp_extra={"t:version": "v2"},
    ).send()

    fields, _files = sent_form(http)
    assert fields == [
        ("from", "from@example.com"),
        ("to", "to@example.com"),
        ("template", "order-shipped"),
        ("t:variables", '{"name": "Ann", "items": [{"sku": "A1"}]}'),
        ("v:order", "42"),
        ("t:version", "v2"),
    ]


def test_empty_body_is_still_sent_without_a_template(mailgun, http):
    queued(http)

    message(body="").send()

    assert sent_fields(http)["text"] == [""]


def test_stored_template_batch_refers_template_variables_to_recipient_variables(mailgun, http):
    queued(http)

    message(
        body="",
        template_id="order-shipped",
        to=["a@example.com", "b@example.com"],
        merge_data={"a@example.com": {"name": "Ann"}, "b@example.com": {"name": "Ben"}},
        merge_global_data={"store": "Acme"},
    ).send()

    fields = sent_fields(http)
    assert fields["template"] == ["order-shipped"]
    assert fields["v:name"] == ["%recipient.name%"]
    assert fields["v:store"] == ["%recipient.store%"]
    assert "t:variables" not in fields
    assert recipient_variables(http) == {
        "a@example.com": {"name": "Ann", "store": "Acme"},
        "b@example.com": {"name": "Ben", "store": "Acme"},
    }


def test_stored_template_batch_key_in_metadata_and_merge_data_is_unsupported(mailgun, http):
    with pytest.raises(AnymailUnsupportedFeature, match=r"metadata and merge_data .*\(order\)"):
        message(
            template_id="order-shipped",
            merge_data={"to@example.com": {"order": "1"}},
            metadata={"order": "batch-7"},
        ).send()
    assert not Message.objects.exists()  # refused before anything was recorded


def test_batch_to_more_than_1000_recipients_is_unsupported(mailgun, http):
    to = [f"user{n}@example.com" for n in range(1001)]

    with pytest.raises(AnymailUnsupportedFeature, match="more than 1,000 'to' recipients"):
        message(to=to, merge_data={}).send()


def test_suppressed_recipient_is_left_out_of_the_batch(mailgun, http):
    services.suppression_add(address="b@example.com", reason="bounced")
    queued(http)
    msg = message(
        to=["a@example.com", "b@example.com"],
        merge_data={"a@example.com": {"n": 1}, "b@example.com": {"n": 2}},
    )

    msg.send()

    assert sent_fields(http)["to"] == ["a@example.com"]
    assert recipient_variables(http) == {"a@example.com": {"n": 1}}
    assert msg.anymail_status.recipients["b@example.com"].status == "suppressed"


# ESP errors


def assert_api_error(excinfo, status_code, text):
    error = excinfo.value
    assert isinstance(error, requests.HTTPError)
    assert error.status_code == status_code
    assert text in str(error)


def test_401_forbidden_plain_text_raises_and_records_failure(mailgun, http):
    # A wrong API key gets a bare text body
    http.post(MESSAGES_URL, status=401, body="Forbidden", content_type="text/plain")

    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()

    assert_api_error(excinfo, 401, "Forbidden")
    assert_recorded(status="failed", esp="mailgun", error_contains="Forbidden")


def test_400_validation_error_message_appears_in_error(mailgun, http):
    http.post(
        MESSAGES_URL,
        status=400,
        json={"message": "to parameter is not a valid address. please check documentation"},
    )

    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()

    assert_api_error(excinfo, 400, "to parameter is not a valid address")
    assert_recorded(
        status="failed", esp="mailgun", error_contains="to parameter is not a valid address"
    )


def test_404_unknown_sender_domain(mailgun, http):
    http.post(MESSAGES_URL, status=404, json={"message": "Domain not found: example.com"})

    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()

    assert_api_error(excinfo, 404, "Domain not found: example.com")
    assert_recorded(status="failed", esp="mailgun", error_contains="Domain not found")


def test_429_rate_limit(mailgun, http):
    http.post(MESSAGES_URL, status=429, json={"message": "Too many requests"})

    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()

    assert_api_error(excinfo, 429, "Too many requests")
    assert_recorded(status="failed", esp="mailgun", error_contains="Too many requests")


def test_500_server_error(mailgun, http):
    http.post(MESSAGES_URL, status=500, body="Internal Server Error", content_type="text/plain")

    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()

    assert_api_error(excinfo, 500, "Internal Server Error")
    assert_recorded(status="failed", esp="mailgun", error_contains="Internal Server Error")


def test_non_json_success_body_raises(mailgun, http):
    http.post(MESSAGES_URL, status=200, body="<html>Queued?</html>", content_type="text/html")

    with pytest.raises(AnymailAPIError, match="Invalid JSON in Mailgun API response"):
        message().send()

    assert_recorded(status="failed", esp="mailgun", error_contains="Invalid JSON")


def test_success_body_without_id_raises(mailgun, http):
    http.post(MESSAGES_URL, status=200, json={"message": "Queued. Thank you."})

    with pytest.raises(AnymailAPIError, match="Invalid Mailgun API response format"):
        message().send()

    assert_recorded(status="failed", esp="mailgun", error_contains="Invalid Mailgun API response")


@pytest.mark.parametrize("error", [requests.ConnectionError("refused"), requests.Timeout("slow")])
def test_connection_errors_raise_api_error_and_record_failure(mailgun, http, error):
    http.post(MESSAGES_URL, body=error)

    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()

    assert isinstance(excinfo.value.__cause__, type(error))
    assert API_KEY not in str(excinfo.value)
    assert_recorded(status="failed", esp="mailgun", error_contains=MESSAGES_URL)


def test_fail_silently_swallows_api_error(mailgun, http):
    http.post(MESSAGES_URL, status=400, json={"message": "from parameter is missing"})

    assert message().send(fail_silently=True) == 0


# Recording off


def test_no_store_sends_without_touching_the_database(
    mailgun, http, no_store, django_assert_num_queries
):
    queued(http)
    msg = message()

    with django_assert_num_queries(0):
        assert msg.send() == 1

    assert msg.anymail_status.message_id == MAILGUN_ID
    assert not Message.objects.exists()


def test_one_session_for_several_messages(mailgun, http):
    queued(http)
    queued(http)
    connection = mail.get_connection()

    sent = connection.send_messages(
        [message(), EmailMessage("Two", "Body", "from@example.com", ["b@example.com"])]
    )

    assert sent == 2
    assert len(http.calls) == 2
    assert connection.session is None  # closed after the batch
