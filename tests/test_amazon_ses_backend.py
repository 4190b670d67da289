"""Amazon SES backend: the exact SES API v2 calls made and how SES's answers are read.

The sesv2 client is a real boto3 client with a botocore Stubber, so every
call is checked against the SES service model as well as against the
expected parameters. Shapes follow
https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_SendEmail.html,
https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_SendBulkEmail.html
and https://docs.aws.amazon.com/ses/latest/APIReference-V2/CommonErrors.html.
"""

import json
from email import message_from_bytes, policy
from email.mime.image import MIMEImage
from types import SimpleNamespace

import boto3
import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError, NoCredentialsError, ReadTimeoutError
from botocore.stub import Stubber
from django.core import mail
from django.core.mail import EmailMessage, send_mail

from sending.exceptions import (
    AnymailAPIError,
    AnymailConfigurationError,
    AnymailRecipientsRefused,
    AnymailSerializationError,
    AnymailUnsupportedFeature,
)
from sending.message import AnymailMessage
from sending.models import Message
from sending.services import suppression_add
from tests.conftest import DJANGO_HAS_MAILERS, make_backend
from tests.helpers import assert_recorded

pytestmark = pytest.mark.django_db

BACKEND = "sending.backends.amazon_ses.EmailBackend"
MESSAGE_ID = "0100018f3c9d2b2a-5b1c3f4e-8d2a-4c6b-9f1e-2a3b4c5d6e7f-000000"
MESSAGE_ID_2 = "0100018f3c9d2b2b-6c2d4a5f-9e3b-4d7c-8a2f-3b4c5d6e7f80-000000"
IDENTITY_ARN = "arn:aws:ses:us-east-1:123456789012:identity/example.com"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01fake-png"


class Capture:
    """Matches any value in Stubber's expected_params, and keeps it to inspect."""

    def __eq__(self, other):
        self.value = other
        return True

    def mime(self):
        return message_from_bytes(self.value, policy=policy.default)


@pytest.fixture
def ses(monkeypatch):
    """The stubbed sesv2 client every backend gets, and what the backend asked boto3 for."""
    client = botocore.session.get_session().create_client(
        "sesv2",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    state = SimpleNamespace(client=client, stubber=Stubber(client), sessions=[], clients=[])

    class RecordingSession:
        def __init__(self, **params):
            state.sessions.append(params)

        def client(self, service_name, **params):
            state.clients.append((service_name, params))
            return client

    monkeypatch.setattr(boto3.session, "Session", RecordingSession)
    with state.stubber:
        yield state
    state.stubber.assert_no_pending_responses()


@pytest.fixture
def amazon_ses(settings, use_backend, ses):
    settings.ANYMAIL = {}
    use_backend(BACKEND)
    return ses


def body_text(part) -> str:
    """A text part's content as the message body gave it.

    Django 6.1 builds bodies with the modern email API, which ends every text
    part with a line break (CRLF on the wire); Django 5.2 sends the body as is.
    """
    content = part if isinstance(part, str) else part.get_content()
    if DJANGO_HAS_MAILERS and content.endswith("\r\n"):
        return content[:-2]
    return content


def message(**kwargs):
    fields = {
        "subject": "Subject",
        "body": "Text body",
        "from_email": "from@example.com",
        "to": ["to@example.com"],
    }
    return AnymailMessage(**{**fields, **kwargs})


def template_message(**kwargs):
    fields = {"from_email": "from@example.com", "to": ["to@example.com"], "template_id": "Welcome"}
    return AnymailMessage(**{**fields, **kwargs})


def expect_send(ses, params, message_id=MESSAGE_ID):
    ses.stubber.add_response("send_email", {"MessageId": message_id}, params)


def expect_raw_send(ses, **params):
    """Expect a raw SendEmail with exactly params (plus Content); return the MIME capture."""
    data = Capture()
    expect_send(ses, {**params, "Content": {"Raw": {"Data": data}}})
    return data


def bulk_result(status="SUCCESS", message_id=MESSAGE_ID, error=None):
    result = {"Status": status}
    if message_id:
        result["MessageId"] = message_id
    if error:
        result["Error"] = error
    return result


# SendEmail with a raw message


def test_plain_message_is_raw_send_email(amazon_ses):
    data = expect_raw_send(
        amazon_ses,
        FromEmailAddress="from@example.com",
        Destination={"ToAddresses": ["to@example.com"]},
    )
    send_mail("Subject", "Text body", "from@example.com", ["to@example.com"])

    mime = data.mime()
    assert mime["From"] == "from@example.com"
    assert mime["To"] == "to@example.com"
    assert mime["Subject"] == "Subject"
    assert mime.get_content_type() == "text/plain"
    assert body_text(mime) == "Text body"
    assert b"\r\n" in data.value  # RFC 5322 line endings


def test_plain_message_status_and_record(amazon_ses):
    expect_raw_send(
        amazon_ses,
        FromEmailAddress="from@example.com",
        Destination={"ToAddresses": ["to@example.com"]},
    )
    msg = message()
    msg.send()
    assert msg.anymail_status.status == {"queued"}
    assert msg.anymail_status.message_id == MESSAGE_ID
    assert_recorded(
        status="sent", esp="amazon_ses", recipients={"to@example.com": ("queued", MESSAGE_ID)}
    )


def test_all_recipients_share_the_message_id(amazon_ses):
    expect_raw_send(
        amazon_ses,
        FromEmailAddress="from@example.com",
        Destination={
            "ToAddresses": ["to@example.com", "Two <two@example.com>"],
            "CcAddresses": ["cc@example.com"],
            "BccAddresses": ["bcc@example.com"],
        },
    )
    message(
        to=["to@example.com", "Two <two@example.com>"],
        cc=["cc@example.com"],
        bcc=["bcc@example.com"],
    ).send()
    assert_recorded(
        status="sent",
        esp="amazon_ses",
        recipients={
            "to@example.com": ("queued", MESSAGE_ID),
            "two@example.com": ("queued", MESSAGE_ID),
            "cc@example.com": ("queued", MESSAGE_ID),
            "bcc@example.com": ("queued", MESSAGE_ID),
        },
    )


def test_bcc_is_in_destination_but_not_in_headers(amazon_ses):
    data = expect_raw_send(
        amazon_ses,
        FromEmailAddress="from@example.com",
        Destination={
            "ToAddresses": ["to@example.com"],
            "CcAddresses": ["Cc Person <cc@example.com>"],
            "BccAddresses": ["bcc@example.com"],
        },
    )
    message(cc=["Cc Person <cc@example.com>"], bcc=["bcc@example.com"]).send()
    mime = data.mime()
    assert mime["Cc"] == "Cc Person <cc@example.com>"
    assert "Bcc" not in mime
    assert b"bcc@example.com" not in data.value


def test_reply_to_and_extra_headers_are_in_the_mime(amazon_ses):
    data = expect_raw_send(
        amazon_ses,
        FromEmailAddress="From Name <from@example.com>",
        Destination={"ToAddresses": ["to@example.com"]},
    )
    message(
        from_email="From Name <from@example.com>",
        reply_to=["reply@example.com", "Other <other@example.com>"],
        headers={"X-Custom": "custom value", "List-Unsubscribe": "<mailto:unsub@example.com>"},
    ).send()
    mime = data.mime()
    assert mime["From"] == "From Name <from@example.com>"
    assert mime["Reply-To"] == "reply@example.com, Other <other@example.com>"
    assert mime["X-Custom"] == "custom value"
    assert mime["List-Unsubscribe"] == "<mailto:unsub@example.com>"


def test_html_alternative_attachments_and_inline_image(amazon_ses):
    data = expect_raw_send(
        amazon_ses,
        FromEmailAddress="from@example.com",
        Destination={"ToAddresses": ["to@example.com"]},
    )
    msg = message()
    cid = msg.attach_inline_image(PNG, "logo.png")
    msg.attach_alternative(f"<p>HTML <img src='cid:{cid}'></p>", "text/html")
    msg.attach("report.csv", "a,b\n1,2\n", "text/csv")
    msg.attach("doc.pdf", b"%PDF-1.4 fake", "application/pdf")
    msg.send()

    parts = {part.get_content_type(): part for part in data.mime().walk()}
    assert body_text(parts["text/plain"]) == "Text body"
    assert body_text(parts["text/html"]) == f"<p>HTML <img src='cid:{cid}'></p>"
    assert parts["image/png"]["Content-ID"] == f"<{cid}>"
    assert parts["image/png"].get_content_disposition() == "inline"
    assert parts["image/png"].get_content() == PNG
    assert parts["text/csv"].get_filename() == "report.csv"
    assert parts["text/csv"].get_content() == "a,b\r\n1,2\r\n"  # text lines end CRLF on the wire
    assert parts["application/pdf"].get_filename() == "doc.pdf"
    assert parts["application/pdf"].get_content() == b"%PDF-1.4 fake"


def test_arbitrary_alternatives_such_as_amp_are_sent(amazon_ses):
    data = expect_raw_send(
        amazon_ses,
        FromEmailAddress="from@example.com",
        Destination={"ToAddresses": ["to@example.com"]},
    )
    msg = message()
    msg.attach_alternative("<html amp4email>AMP</html>", "text/x-amp-html")
    msg.attach_alternative("BEGIN:VCALENDAR", "text/calendar")
    msg.send()
    types = [part.get_content_type() for part in data.mime().walk()]
    assert types == ["multipart/alternative", "text/plain", "text/x-amp-html", "text/calendar"]


def test_html_only_message(amazon_ses):
    data = expect_raw_send(
        amazon_ses,
        FromEmailAddress="from@example.com",
        Destination={"ToAddresses": ["to@example.com"]},
    )
    msg = message(body="<p>Only HTML</p>")
    msg.content_subtype = "html"
    msg.send()
    mime = data.mime()
    assert mime.get_content_type() == "text/html"
    assert body_text(mime) == "<p>Only HTML</p>"


def test_non_ascii_text_is_sent_quoted_printable(amazon_ses):
    # SES wants content outside 7-bit ASCII encoded; Django would send it 8bit
    data = expect_raw_send(
        amazon_ses,
        FromEmailAddress="=?utf-8?b?RnLDqWTDqXJpYw==?= <from@example.com>",
        Destination={"ToAddresses": ["to@example.com"]},
    )
    msg = message(from_email="Frédéric <from@example.com>", subject="Café ☕", body="Voilà ✓\n")
    msg.attach_alternative("<p>Voilà ✓</p>", "text/html")
    msg.send()

    assert data.value.isascii()
    mime = data.mime()
    assert mime["Subject"] == "Café ☕"
    assert str(mime["From"]) == "Frédéric <from@example.com>"
    for part in mime.walk():
        if part.get_content_maintype() == "text":
            assert part["Content-Transfer-Encoding"] == "quoted-printable"
    leaves = [part.get_content() for part in mime.walk() if not part.is_multipart()]
    assert leaves[0] == "Voilà ✓\r\n"  # CRLF on the wire
    assert body_text(leaves[1]) == "<p>Voilà ✓</p>"


def test_spoofed_to_header_is_kept_in_the_mime(amazon_ses):
    data = expect_raw_send(
        amazon_ses,
        FromEmailAddress="from@example.com",
        Destination={"ToAddresses": ["to@example.com"]},
    )
    message(headers={"To": "Everyone <list@example.com>"}).send()
    assert data.mime()["To"] == "Everyone <list@example.com>"


def test_from_header_overrides_from_email_in_mime_and_params(amazon_ses):
    data = expect_raw_send(
        amazon_ses,
        FromEmailAddress="Header From <header@example.com>",
        FeedbackForwardingEmailAddress="from@example.com",
        Destination={"ToAddresses": ["to@example.com"]},
    )
    message(headers={"From": "Header From <header@example.com>"}).send()
    assert data.mime()["From"] == "Header From <header@example.com>"


def test_send_defaults_show_in_headers_and_destination(amazon_ses, settings):
    settings.ANYMAIL = {
        "SEND_DEFAULTS": {
            "bcc": ["archive@example.com"],
            "reply_to": ["support@example.com"],
            "extra_headers": {"X-Sent-By": "mailhub"},
        }
    }
    data = expect_raw_send(
        amazon_ses,
        FromEmailAddress="from@example.com",
        Destination={"ToAddresses": ["to@example.com"], "BccAddresses": ["archive@example.com"]},
    )
    message().send()
    mime = data.mime()
    assert mime["Reply-To"] == "support@example.com"
    assert mime["X-Sent-By"] == "mailhub"


def test_suppressed_recipient_is_left_out_of_destination_and_headers(amazon_ses):
    suppression_add(address="gone@example.com", reason="bounced")
    data = expect_raw_send(
        amazon_ses,
        FromEmailAddress="from@example.com",
        Destination={"ToAddresses": ["to@example.com"]},
    )
    message(to=["to@example.com", "gone@example.com"]).send()
    assert data.mime()["To"] == "to@example.com"
    assert_recorded(
        status="sent",
        esp="amazon_ses",
        recipients={
            "to@example.com": ("queued", MESSAGE_ID),
            "gone@example.com": ("suppressed", ""),
        },
    )


# Tags, metadata, tracking and the other Anymail attributes


def test_tags_and_metadata_become_custom_headers(amazon_ses):
    data = expect_raw_send(
        amazon_ses,
        FromEmailAddress="from@example.com",
        Destination={"ToAddresses": ["to@example.com"]},
    )
    message(tags=["Order Confirmation", "café"], metadata={"user_id": 12, "plan": "pro"}).send()
    mime = data.mime()
    assert mime.get_all("X-Tag") == ["Order Confirmation", "café"]
    assert json.loads(mime["X-Metadata"]) == {"user_id": 12, "plan": "pro"}


def test_message_tag_name_copies_the_tag_to_an_ses_message_tag(amazon_ses, settings):
    settings.ANYMAIL = {"AMAZON_SES_MESSAGE_TAG_NAME": "Type"}
    data = expect_raw_send(
        amazon_ses,
        FromEmailAddress="from@example.com",
        Destination={"ToAddresses": ["to@example.com"]},
        EmailTags=[{"Name": "Type", "Value": "Marketing"}],
    )
    message(tags=["Marketing"]).send()
    assert data.mime().get_all("X-Tag") == ["Marketing"]


def test_message_tag_name_with_several_tags_is_unsupported(amazon_ses, settings):
    settings.ANYMAIL = {"AMAZON_SES_MESSAGE_TAG_NAME": "Type"}
    with pytest.raises(AnymailUnsupportedFeature, match="multiple tags"):
        message(tags=["one", "two"]).send()
    assert not Message.objects.exists()


def test_message_tag_name_with_several_tags_ignored_uses_the_first(amazon_ses, settings):
    settings.ANYMAIL = {"AMAZON_SES_MESSAGE_TAG_NAME": "Type", "IGNORE_UNSUPPORTED_FEATURES": True}
    data = expect_raw_send(
        amazon_ses,
        FromEmailAddress="from@example.com",
        Destination={"ToAddresses": ["to@example.com"]},
        EmailTags=[{"Name": "Type", "Value": "one"}],
    )
    message(tags=["one", "two"]).send()
    assert data.mime().get_all("X-Tag") == ["one", "two"]


def test_tag_with_characters_ses_refuses_is_unsupported_as_message_tag(amazon_ses, settings):
    settings.ANYMAIL = {"AMAZON_SES_MESSAGE_TAG_NAME": "Type"}
    with pytest.raises(AnymailUnsupportedFeature, match="'Order Confirmation' as an SES message"):
        message(tags=["Order Confirmation"]).send()


def test_tag_with_characters_ses_refuses_ignored_stays_in_header_only(amazon_ses, settings):
    settings.ANYMAIL = {"AMAZON_SES_MESSAGE_TAG_NAME": "Type", "IGNORE_UNSUPPORTED_FEATURES": True}
    data = expect_raw_send(
        amazon_ses,
        FromEmailAddress="from@example.com",
        Destination={"ToAddresses": ["to@example.com"]},
    )
    message(tags=["Order Confirmation"]).send()
    assert data.mime()["X-Tag"] == "Order Confirmation"


def test_invalid_message_tag_name_setting_is_a_configuration_error(settings):
    settings.ANYMAIL = {"AMAZON_SES_MESSAGE_TAG_NAME": "Mail Type"}
    with pytest.raises(AnymailConfigurationError, match="AMAZON_SES_MESSAGE_TAG_NAME 'Mail Type'"):
        make_backend(BACKEND)


def test_unserializable_metadata_raises_serialization_error(amazon_ses):
    with pytest.raises(AnymailSerializationError):
        message(metadata={"when": object()}).send()


def test_tracking_envelope_sender_and_configuration_set(amazon_ses, settings):
    settings.ANYMAIL = {"AMAZON_SES_CONFIGURATION_SET_NAME": "TrackingSet"}
    expect_raw_send(
        amazon_ses,
        FromEmailAddress="from@example.com",
        FeedbackForwardingEmailAddress="bounces@example.com",
        ConfigurationSetName="TrackingSet",
        ConfigurationOverrides={
            "Tracking": {"OpenTrackingEnabled": "ENABLED", "ClickTrackingEnabled": "DISABLED"}
        },
        Destination={"ToAddresses": ["to@example.com"]},
    )
    message(
        track_opens=True, track_clicks=False, envelope_sender="Bounces <bounces@example.com>"
    ).send()


def test_esp_extra_is_merged_into_send_email_params(amazon_ses, settings):
    settings.ANYMAIL = {
        "AMAZON_SES_CONFIGURATION_SET_NAME": "DefaultSet",
        "AMAZON_SES_MESSAGE_TAG_NAME": "Type",
    }
    expect_raw_send(
        amazon_ses,
        FromEmailAddress="from@example.com",
        FromEmailAddressIdentityArn=IDENTITY_ARN,
        ConfigurationSetName="NoTrackingSet",
        ConfigurationOverrides={
            "Tracking": {"OpenTrackingEnabled": "DISABLED", "ClickTrackingEnabled": "DISABLED"}
        },
        ListManagementOptions={"ContactListName": "Customers", "TopicName": "Offers"},
        EmailTags=[{"Name": "Type", "Value": "Offer"}, {"Name": "UserID", "Value": "42"}],
        Destination={"ToAddresses": ["to@example.com"]},
    )
    message(
        tags=["Offer"],
        track_opens=False,
        esp_extra={
            "FromEmailAddressIdentityArn": IDENTITY_ARN,
            "ConfigurationSetName": "NoTrackingSet",
            "ConfigurationOverrides": {"Tracking": {"ClickTrackingEnabled": "DISABLED"}},
            "ListManagementOptions": {"ContactListName": "Customers", "TopicName": "Offers"},
            "EmailTags": [{"Name": "UserID", "Value": "42"}],
        },
    ).send()


def test_esp_extra_v1_parameter_names_are_translated(amazon_ses):
    # The documented (SES v1) esp_extra example keeps working
    expect_raw_send(
        amazon_ses,
        FromEmailAddress="from@example.com",
        FromEmailAddressIdentityArn=IDENTITY_ARN,
        FeedbackForwardingEmailAddressIdentityArn="arn:aws:ses:us-east-1:123456789012:identity/b.com",
        EmailTags=[{"Name": "TestVariation", "Value": "Subject-Emoji-Trial-A"}],
        Destination={"ToAddresses": ["to@example.com"]},
    )
    message(
        esp_extra={
            "SourceArn": IDENTITY_ARN,
            "ReturnPathArn": "arn:aws:ses:us-east-1:123456789012:identity/b.com",
            "Tags": [{"Name": "TestVariation", "Value": "Subject-Emoji-Trial-A"}],
        }
    ).send()


def test_send_at_is_unsupported(amazon_ses):
    with pytest.raises(AnymailUnsupportedFeature, match="send_at"):
        message(send_at=1700000000).send()
    assert not Message.objects.exists()


def test_ignore_unsupported_features_sends_without_send_at(amazon_ses, settings):
    settings.ANYMAIL = {"IGNORE_UNSUPPORTED_FEATURES": True}
    expect_raw_send(
        amazon_ses,
        FromEmailAddress="from@example.com",
        Destination={"ToAddresses": ["to@example.com"]},
    )
    message(send_at=1700000000).send()
    assert_recorded(
        status="sent", esp="amazon_ses", recipients={"to@example.com": ("queued", MESSAGE_ID)}
    )


def test_merge_global_data_without_template_is_unsupported(amazon_ses):
    with pytest.raises(AnymailUnsupportedFeature, match="merge_global_data without template_id"):
        message(merge_global_data={"name": "Alice"}).send()


# SendEmail with a stored template


def test_template_send_uses_content_template(amazon_ses):
    amazon_ses.stubber.add_response(
        "send_email",
        {"MessageId": MESSAGE_ID},
        {
            "FromEmailAddress": "Shop <shop@example.com>",
            "Destination": {"ToAddresses": ["Alice <alice@example.com>"]},
            "ReplyToAddresses": ["help@example.com"],
            "Content": {
                "Template": {
                    "TemplateName": "Welcome",
                    "TemplateData": '{"name": "Alice", "ship_date": "May 15"}',
                    "Headers": [
                        {"Name": "X-Campaign", "Value": "spring"},
                        {"Name": "X-Tag", "Value": "welcome"},
                        {"Name": "X-Metadata", "Value": '{"user_id": 7}'},
                    ],
                }
            },
        },
    )
    msg = template_message(
        from_email="Shop <shop@example.com>",
        to=["Alice <alice@example.com>"],
        reply_to=["help@example.com"],
        headers={"X-Campaign": "spring"},
        tags=["welcome"],
        metadata={"user_id": 7},
        merge_global_data={"name": "Alice", "ship_date": "May 15"},
    )
    msg.send()
    assert_recorded(
        status="sent", esp="amazon_ses", recipients={"alice@example.com": ("queued", MESSAGE_ID)}
    )


def test_template_send_without_merge_data_sends_empty_template_data(amazon_ses):
    expect_send(
        amazon_ses,
        {
            "FromEmailAddress": "from@example.com",
            "Destination": {"ToAddresses": ["to@example.com"]},
            "Content": {"Template": {"TemplateName": "Welcome", "TemplateData": "{}"}},
        },
    )
    template_message().send()


def test_template_arn_is_sent_as_template_arn(amazon_ses):
    arn = "arn:aws:ses:us-east-1:123456789012:template/Welcome"
    expect_send(
        amazon_ses,
        {
            "FromEmailAddress": "from@example.com",
            "Destination": {"ToAddresses": ["to@example.com"]},
            "Content": {"Template": {"TemplateArn": arn, "TemplateData": "{}"}},
        },
    )
    template_message(template_id=arn).send()


def test_template_send_with_attachments(amazon_ses):
    expect_send(
        amazon_ses,
        {
            "FromEmailAddress": "from@example.com",
            "Destination": {"ToAddresses": ["to@example.com"]},
            "Content": {
                "Template": {
                    "TemplateName": "Welcome",
                    "TemplateData": "{}",
                    "Attachments": [
                        {
                            "RawContent": b"%PDF-1.4 fake",
                            "FileName": "terms.pdf",
                            "ContentType": "application/pdf",
                            "ContentDisposition": "ATTACHMENT",
                        },
                        {
                            "RawContent": PNG,
                            "FileName": "logo.png",
                            "ContentType": "image/png",
                            "ContentDisposition": "INLINE",
                            "ContentId": "logo@example.com",
                        },
                    ],
                }
            },
        },
    )
    msg = template_message()
    msg.attach("terms.pdf", b"%PDF-1.4 fake", "application/pdf")
    image = MIMEImage(PNG, "png")
    image.add_header("Content-Disposition", "inline", filename="logo.png")
    image["Content-ID"] = "<logo@example.com>"
    msg.attach(image)
    msg.send()


def test_template_header_values_outside_ascii_are_rfc2047_encoded(amazon_ses):
    expect_send(
        amazon_ses,
        {
            "FromEmailAddress": "from@example.com",
            "Destination": {"ToAddresses": ["to@example.com"]},
            "Content": {
                "Template": {
                    "TemplateName": "Welcome",
                    "TemplateData": "{}",
                    "Headers": [{"Name": "X-Tag", "Value": "=?utf-8?b?Y2Fmw6k=?="}],
                }
            },
        },
    )
    template_message(tags=["café"]).send()


def test_template_with_more_than_15_headers_is_unsupported(amazon_ses):
    headers = {f"X-Header-{n}": "value" for n in range(16)}
    with pytest.raises(AnymailUnsupportedFeature, match="more than 15 headers with a template"):
        template_message(headers=headers).send()


def test_template_with_subject_is_unsupported(amazon_ses):
    with pytest.raises(AnymailUnsupportedFeature, match="overriding the template's subject"):
        template_message(subject="My own subject").send()


def test_template_with_body_is_unsupported(amazon_ses):
    with pytest.raises(AnymailUnsupportedFeature, match="overriding the template's body"):
        template_message(body="My own body").send()


# SendBulkEmail: batch sends with a stored template


def batch_message(**kwargs):
    fields = {
        "from_email": "shipping@example.com",
        "to": ["alice@example.com", "Bob <bob@example.com>"],
        "template_id": "OrderShipped",
        "merge_data": {
            "alice@example.com": {"name": "Alice", "order_no": "12345"},
            "bob@example.com": {"name": "Bob", "order_no": "54321"},
        },
        "merge_global_data": {"ship_date": "May 15"},
    }
    return AnymailMessage(**{**fields, **kwargs})


def test_batch_send_is_send_bulk_email_with_one_entry_per_to(amazon_ses, settings):
    settings.ANYMAIL = {"AMAZON_SES_MESSAGE_TAG_NAME": "Type"}
    amazon_ses.stubber.add_response(
        "send_bulk_email",
        {"BulkEmailEntryResults": [bulk_result(), bulk_result(message_id=MESSAGE_ID_2)]},
        {
            "FromEmailAddress": "shipping@example.com",
            "ReplyToAddresses": ["help@example.com"],
            "DefaultEmailTags": [{"Name": "Type", "Value": "shipping"}],
            "DefaultContent": {
                "Template": {
                    "TemplateName": "OrderShipped",
                    "TemplateData": '{"ship_date": "May 15"}',
                    "Headers": [
                        {"Name": "X-Tag", "Value": "shipping"},
                        {"Name": "X-Metadata", "Value": '{"batch": "b1"}'},
                    ],
                }
            },
            "BulkEmailEntries": [
                {
                    "Destination": {"ToAddresses": ["alice@example.com"]},
                    "ReplacementEmailContent": {
                        "ReplacementTemplate": {
                            "ReplacementTemplateData": (
                                '{"ship_date": "May 15", "name": "Alice", "order_no": "12345"}'
                            )
                        }
                    },
                    "ReplacementHeaders": [
                        {"Name": "List-Unsubscribe", "Value": "<https://example.com/u/alice>"},
                        {"Name": "X-Metadata", "Value": '{"batch": "b1", "customer": "A1"}'},
                    ],
                },
                {
                    "Destination": {"ToAddresses": ["Bob <bob@example.com>"]},
                    "ReplacementEmailContent": {
                        "ReplacementTemplate": {
                            "ReplacementTemplateData": (
                                '{"ship_date": "May 15", "name": "Bob", "order_no": "54321"}'
                            )
                        }
                    },
                },
            ],
        },
    )
    msg = batch_message(
        reply_to=["help@example.com"],
        tags=["shipping"],
        metadata={"batch": "b1"},
        merge_metadata={"alice@example.com": {"customer": "A1"}},
        merge_headers={"alice@example.com": {"List-Unsubscribe": "<https://example.com/u/alice>"}},
    )
    msg.send()

    assert msg.anymail_status.message_id == {MESSAGE_ID, MESSAGE_ID_2}
    assert_recorded(
        status="sent",
        esp="amazon_ses",
        recipients={
            "alice@example.com": ("queued", MESSAGE_ID),
            "bob@example.com": ("queued", MESSAGE_ID_2),
        },
    )


def test_batch_entry_statuses_are_mapped_in_order(amazon_ses):
    amazon_ses.stubber.add_response(
        "send_bulk_email",
        {
            "BulkEmailEntryResults": [
                bulk_result(message_id=MESSAGE_ID),
                bulk_result("MESSAGE_REJECTED", None, "Email address is on the suppression list"),
            ]
        },
    )
    msg = batch_message()
    msg.send()
    assert msg.anymail_status.recipients["alice@example.com"].status == "queued"
    assert msg.anymail_status.recipients["bob@example.com"].status == "rejected"
    assert_recorded(
        status="sent",
        esp="amazon_ses",
        recipients={
            "alice@example.com": ("queued", MESSAGE_ID),
            "bob@example.com": ("rejected", ""),
        },
    )


def test_batch_with_every_entry_rejected_raises_recipients_refused(amazon_ses):
    amazon_ses.stubber.add_response(
        "send_bulk_email",
        {"BulkEmailEntryResults": [bulk_result("MESSAGE_REJECTED", None)] * 2},
    )
    with pytest.raises(AnymailRecipientsRefused):
        batch_message().send()


def test_batch_where_ses_sent_nothing_raises_with_ses_errors(amazon_ses):
    amazon_ses.stubber.add_response(
        "send_bulk_email",
        {
            "BulkEmailEntryResults": [
                bulk_result("TEMPLATE_NOT_FOUND", None, "Template OrderShipped does not exist"),
            ]
            * 2
        },
    )
    with pytest.raises(AnymailAPIError, match="Template OrderShipped does not exist"):
        batch_message().send()
    assert_recorded(
        status="failed", esp="amazon_ses", error_contains="alice@example.com: TEMPLATE_NOT_FOUND"
    )


def test_batch_result_count_mismatch_is_an_api_error(amazon_ses):
    amazon_ses.stubber.add_response("send_bulk_email", {"BulkEmailEntryResults": [bulk_result()]})
    with pytest.raises(AnymailAPIError, match="1 results for 2 entries"):
        batch_message().send()


def test_batch_without_template_id_is_unsupported(amazon_ses):
    with pytest.raises(AnymailUnsupportedFeature, match="batch sending .* without template_id"):
        message(merge_metadata={"to@example.com": {"customer": "A1"}}).send()


def test_batch_with_cc_is_unsupported(amazon_ses):
    with pytest.raises(AnymailUnsupportedFeature, match="cc or bcc with batch sending"):
        batch_message(cc=["cc@example.com"]).send()


def test_batch_with_cc_ignored_leaves_cc_out(amazon_ses, settings):
    settings.ANYMAIL = {"IGNORE_UNSUPPORTED_FEATURES": True}
    amazon_ses.stubber.add_response(
        "send_bulk_email",
        {"BulkEmailEntryResults": [bulk_result(), bulk_result(message_id=MESSAGE_ID_2)]},
    )
    msg = batch_message(cc=["cc@example.com"])
    msg.send()
    assert msg.anymail_status.recipients["cc@example.com"].status == "failed"


# Errors from SES and from the connection


def test_unverified_sender_message_rejected(amazon_ses):
    text = (
        "Email address is not verified. The following identities failed the check "
        "in region US-EAST-1: from@example.com"
    )
    amazon_ses.stubber.add_client_error("send_email", "MessageRejected", text, http_status_code=400)
    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()
    assert "MessageRejected" in str(excinfo.value)
    assert text in str(excinfo.value)
    assert excinfo.value.status_code == 400
    assert excinfo.value.__cause__ is not None
    assert_recorded(status="failed", esp="amazon_ses", error_contains=text)


def test_bad_request_validation_error(amazon_ses):
    text = "Missing final '@domain'"
    amazon_ses.stubber.add_client_error("send_email", "BadRequestException", text, 400)
    with pytest.raises(AnymailAPIError, match="BadRequestException: Missing final '@domain'"):
        message().send()
    assert_recorded(status="failed", esp="amazon_ses", error_contains=text)


def test_invalid_credentials(amazon_ses):
    text = "The security token included in the request is invalid."
    amazon_ses.stubber.add_client_error("send_email", "UnrecognizedClientException", text, 403)
    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()
    assert excinfo.value.status_code == 403
    assert_recorded(status="failed", esp="amazon_ses", error_contains=text)


def test_throttled(amazon_ses):
    text = "Maximum sending rate exceeded."
    amazon_ses.stubber.add_client_error("send_email", "TooManyRequestsException", text, 429)
    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()
    assert excinfo.value.status_code == 429
    assert_recorded(status="failed", esp="amazon_ses", error_contains=text)


def test_server_error(amazon_ses):
    text = "The request processing has failed because of an unknown error, exception or failure."
    amazon_ses.stubber.add_client_error("send_email", "InternalFailure", text, 500)
    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()
    assert excinfo.value.status_code == 500
    assert_recorded(status="failed", esp="amazon_ses", error_contains=text)


def test_bulk_send_error(amazon_ses):
    text = "Template OrderShipped does not exist."
    amazon_ses.stubber.add_client_error("send_bulk_email", "NotFoundException", text, 404)
    with pytest.raises(AnymailAPIError, match="SendBulkEmail error NotFoundException"):
        batch_message().send()
    assert_recorded(status="failed", esp="amazon_ses", error_contains=text)


def test_fail_silently_swallows_ses_error(amazon_ses):
    amazon_ses.stubber.add_client_error("send_email", "MessageRejected", "Rejected", 400)
    sent = send_mail("Subject", "Body", "from@example.com", ["to@example.com"], fail_silently=True)
    assert sent == 0
    assert_recorded(status="failed", esp="amazon_ses", error_contains="Rejected")


def test_response_without_message_id_is_an_api_error(amazon_ses):
    amazon_ses.stubber.add_response("send_email", {})
    with pytest.raises(AnymailAPIError, match="Unexpected Amazon SES SendEmail response"):
        message().send()
    assert_recorded(status="failed", esp="amazon_ses", error_contains="Unexpected")


@pytest.mark.parametrize(
    "error",
    [
        EndpointConnectionError(endpoint_url="https://email.us-east-1.amazonaws.com/v2/email"),
        ReadTimeoutError(endpoint_url="https://email.us-east-1.amazonaws.com/v2/email"),
        NoCredentialsError(),
    ],
    ids=["connection", "timeout", "no-credentials"],
)
def test_botocore_errors_become_api_errors(amazon_ses, monkeypatch, error):
    def fail(**params):
        raise error

    monkeypatch.setattr(amazon_ses.client, "send_email", fail)
    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()
    assert excinfo.value.__cause__ is error
    assert str(error) in str(excinfo.value)
    assert_recorded(status="failed", esp="amazon_ses", error_contains=str(error))


def test_invalid_esp_extra_parameter_is_an_api_error(amazon_ses):
    # boto3 validates parameters against the SES model before any request is made
    amazon_ses.stubber.deactivate()
    with pytest.raises(AnymailAPIError, match='Unknown parameter in input: "Bogus"'):
        message(esp_extra={"Bogus": 1}).send()
    assert_recorded(status="failed", esp="amazon_ses", error_contains="Bogus")


# Settings, the boto3 session and client


def test_no_settings_are_required(settings):
    settings.ANYMAIL = {}
    backend = make_backend(BACKEND)
    assert backend.esp_key == "amazon_ses"


def test_session_and_client_params_come_from_settings(amazon_ses, settings):
    settings.ANYMAIL = {
        "AMAZON_SES_SESSION_PARAMS": {"profile_name": "mailhub-testing"},
        "AMAZON_SES_CLIENT_PARAMS": {
            "region_name": "eu-west-1",
            "endpoint_url": "https://email.eu-west-1.amazonaws.com",
            "config": {"connect_timeout": 5, "read_timeout": 20},
        },
    }
    expect_raw_send(
        amazon_ses,
        FromEmailAddress="from@example.com",
        Destination={"ToAddresses": ["to@example.com"]},
    )
    message().send()

    assert amazon_ses.sessions == [{"profile_name": "mailhub-testing"}]
    [(service_name, client_params)] = amazon_ses.clients
    assert service_name == "sesv2"
    config = client_params.pop("config")
    assert client_params == {
        "region_name": "eu-west-1",
        "endpoint_url": "https://email.eu-west-1.amazonaws.com",
    }
    assert isinstance(config, Config)
    assert (config.connect_timeout, config.read_timeout) == (5, 20)


def test_invalid_client_config_is_a_configuration_error(settings):
    settings.ANYMAIL = {"AMAZON_SES_CLIENT_PARAMS": {"config": {"no_such_option": 1}}}
    with pytest.raises(AnymailConfigurationError, match="AMAZON_SES_CLIENT_PARAMS"):
        make_backend(BACKEND)


def test_one_client_per_send_messages_call(amazon_ses):
    for _ in range(2):
        expect_raw_send(
            amazon_ses,
            FromEmailAddress="from@example.com",
            Destination={"ToAddresses": ["to@example.com"]},
        )
    connection = mail.get_connection()
    assert connection.send_messages([message(), message()]) == 2
    assert len(amazon_ses.clients) == 1
    assert connection.client is None  # closed after the call


def test_missing_region_is_a_configuration_error(settings, use_backend, monkeypatch, tmp_path):
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    settings.ANYMAIL = {
        "AMAZON_SES_SESSION_PARAMS": {
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }
    }
    use_backend(BACKEND)
    with pytest.raises(AnymailConfigurationError, match="AMAZON_SES_CLIENT_PARAMS"):
        send_mail("Subject", "Body", "from@example.com", ["to@example.com"])


def test_no_store_sends_without_touching_the_database(
    amazon_ses, no_store, django_assert_num_queries
):
    expect_raw_send(
        amazon_ses,
        FromEmailAddress="from@example.com",
        Destination={"ToAddresses": ["to@example.com"]},
    )
    msg = message()
    with django_assert_num_queries(0):
        msg.send()
    assert msg.anymail_status.status == {"queued"}


def test_plain_django_email_message(amazon_ses):
    expect_raw_send(
        amazon_ses,
        FromEmailAddress="from@example.com",
        Destination={"ToAddresses": ["to@example.com"]},
    )
    assert EmailMessage("Subject", "Body", "from@example.com", ["to@example.com"]).send() == 1
