"""System checks for the admin's MAILHUB settings."""

import pytest

from mailhub.checks import check_admin_settings


def ids(settings, **mailhub):
    settings.MAILHUB = {**settings.MAILHUB, **mailhub}
    return [error.id for error in check_admin_settings()]


def test_default_settings_pass(settings):
    assert ids(settings) == []


def test_resend_backends_must_be_mailhub_backends(settings):
    assert ids(settings, RESEND_BACKENDS=["sending.backends.postmark.EmailBackend"]) == []
    assert ids(settings, RESEND_BACKENDS="sending.backends.postmark.EmailBackend") == [
        "mailhub.admin.E001"
    ]
    assert ids(
        settings,
        RESEND_BACKENDS=["django.core.mail.backends.smtp.EmailBackend", "sending.backends.x.Y"],
    ) == ["mailhub.admin.E002", "mailhub.admin.E002"]


@pytest.mark.parametrize("value", [-0.1, 1.5, "5%", True])
def test_rate_thresholds_must_be_rates(settings, value):
    assert ids(settings, BOUNCE_RATE_WARNING=value) == ["mailhub.admin.E003"]
    assert ids(settings, BOUNCE_RATE_WARNING=0.05, COMPLAINT_RATE_WARNING=value) == [
        "mailhub.admin.E003"
    ]
