"""django.core.mail works unchanged once mailhub is the email backend."""

import django
import pytest
from django.core import mail
from django.core.mail import (
    EmailMessage,
    EmailMultiAlternatives,
    mail_admins,
    send_mail,
    send_mass_mail,
)

from sending.models import Message
from tests.conftest import DJANGO_HAS_MAILERS

pytestmark = pytest.mark.django_db

SANDBOX = "sending.backends.sandbox.EmailBackend"


@pytest.fixture(autouse=True)
def sandbox(use_backend):
    use_backend(SANDBOX)


def test_send_mail_with_html_message():
    sent = send_mail(
        "Subject", "text", "from@example.com", ["to@example.com"], html_message="<p>html</p>"
    )
    assert sent == 1
    record = Message.objects.get()
    assert (record.esp, record.status, record.html_body) == ("sandbox", "sent", "<p>html</p>")


def test_send_mass_mail_uses_one_connection_and_records_each():
    datatuple = (
        ("One", "Body one", "from@example.com", ["a@example.com"]),
        ("Two", "Body two", "from@example.com", ["b@example.com"]),
    )
    assert send_mass_mail(datatuple) == 2
    assert list(Message.objects.order_by("id").values_list("subject", flat=True)) == ["One", "Two"]


def test_mail_admins_goes_through_mailhub(settings):
    settings.ADMINS = [("Ops", "ops@example.com")]
    mail_admins("Disk full", "details")
    record = Message.objects.get()
    assert record.subject == "[Django] Disk full"
    assert list(record.recipients.values_list("address", flat=True)) == ["ops@example.com"]


def test_email_multi_alternatives_send():
    message = EmailMultiAlternatives("s", "t", "from@example.com", ["to@example.com"])
    message.attach_alternative("<b>h</b>", "text/html")
    assert message.send() == 1
    assert message.anymail_status.status == {"queued"}


def test_plain_email_message_gets_anymail_status():
    message = EmailMessage("s", "t", "from@example.com", ["to@example.com"])
    message.send()
    assert message.anymail_status.message_id.endswith("@sandbox.mailhub>")


@pytest.mark.skipif(not DJANGO_HAS_MAILERS, reason="MAILERS is new in Django 6.1")
def test_mailers_setting_with_options_and_using(settings):
    settings.MAILERS = {
        "default": {"BACKEND": SANDBOX},
        "marketing": {
            "BACKEND": "sending.backends.test.EmailBackend",
            "OPTIONS": {"send_defaults": {"tags": ["marketing"]}},
        },
    }
    send_mail("s", "t", "from@example.com", ["to@example.com"], using="marketing")
    record = Message.objects.get()
    assert (record.esp, record.tags) == ("test", ["marketing"])
    assert mail.mailers["marketing"].alias == "marketing"


@pytest.mark.skipif(not DJANGO_HAS_MAILERS, reason="MAILERS is new in Django 6.1")
def test_mailers_unknown_option_is_reported(settings):
    settings.MAILERS = {
        "default": {"BACKEND": SANDBOX, "OPTIONS": {"no_such_option": 1}},
    }
    with pytest.raises(mail.InvalidMailer, match="no_such_option"):
        mail.mailers["default"]


@pytest.mark.skipif(DJANGO_HAS_MAILERS, reason="Django 5.2 configures the backend by EMAIL_BACKEND")
def test_get_connection_passes_options_to_backend():
    connection = mail.get_connection(SANDBOX, ignore_recipient_status=True)
    assert connection.ignore_recipient_status is True
    assert django.VERSION < (6, 1)
