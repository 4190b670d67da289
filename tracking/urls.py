"""Tracking webhook URLs: <esp>/tracking/, named <esp>_tracking_webhook (mounted under anymail/).

One line per ESP, in alphabetical order.
"""

from django.urls import path

from .webhooks.amazon_ses import AmazonSESTrackingWebhookView
from .webhooks.brevo import BrevoTrackingWebhookView
from .webhooks.mailersend import MailerSendTrackingWebhookView
from .webhooks.mailgun import MailgunTrackingWebhookView
from .webhooks.mailjet import MailjetTrackingWebhookView
from .webhooks.mailtrap import MailtrapTrackingWebhookView
from .webhooks.mandrill import MandrillTrackingWebhookView
from .webhooks.postal import PostalTrackingWebhookView
from .webhooks.postmark import PostmarkTrackingWebhookView
from .webhooks.resend import ResendTrackingWebhookView
from .webhooks.sandbox import SandboxTrackingWebhookView
from .webhooks.scaleway import ScalewayTrackingWebhookView
from .webhooks.sendgrid import SendGridTrackingWebhookView
from .webhooks.sendinblue import SendinBlueTrackingWebhookView
from .webhooks.sparkpost import SparkPostTrackingWebhookView
from .webhooks.unisender_go import UnisenderGoTrackingWebhookView

urlpatterns = [
    path(
        "amazon_ses/tracking/",
        AmazonSESTrackingWebhookView.as_view(),
        name="amazon_ses_tracking_webhook",
    ),
    path("brevo/tracking/", BrevoTrackingWebhookView.as_view(), name="brevo_tracking_webhook"),
    path(
        "mailersend/tracking/",
        MailerSendTrackingWebhookView.as_view(),
        name="mailersend_tracking_webhook",
    ),
    path(
        "mailgun/tracking/", MailgunTrackingWebhookView.as_view(), name="mailgun_tracking_webhook"
    ),
    path(
        "mailjet/tracking/", MailjetTrackingWebhookView.as_view(), name="mailjet_tracking_webhook"
    ),
    path(
        "mailtrap/tracking/",
        MailtrapTrackingWebhookView.as_view(),
        name="mailtrap_tracking_webhook",
    ),
    # Mandrill's documented URL, anymail/mandrill/ (tracking and inbound), is in inbound.urls;
    # .../tracking/ is the older one.
    path(
        "mandrill/tracking/",
        MandrillTrackingWebhookView.as_view(),
        name="mandrill_tracking_webhook",
    ),
    path("postal/tracking/", PostalTrackingWebhookView.as_view(), name="postal_tracking_webhook"),
    path(
        "postmark/tracking/",
        PostmarkTrackingWebhookView.as_view(),
        name="postmark_tracking_webhook",
    ),
    path("resend/tracking/", ResendTrackingWebhookView.as_view(), name="resend_tracking_webhook"),
    path(
        "sandbox/tracking/", SandboxTrackingWebhookView.as_view(), name="sandbox_tracking_webhook"
    ),
    path(
        "scaleway/tracking/",
        ScalewayTrackingWebhookView.as_view(),
        name="scaleway_tracking_webhook",
    ),
    path(
        "sendgrid/tracking/",
        SendGridTrackingWebhookView.as_view(),
        name="sendgrid_tracking_webhook",
    ),
    # The former name of Brevo: kept for webhooks set up before the rename.
    path(
        "sendinblue/tracking/",
        SendinBlueTrackingWebhookView.as_view(),
        name="sendinblue_tracking_webhook",
    ),
    path(
        "sparkpost/tracking/",
        SparkPostTrackingWebhookView.as_view(),
        name="sparkpost_tracking_webhook",
    ),
    path(
        "unisender_go/tracking/",
        UnisenderGoTrackingWebhookView.as_view(),
        name="unisender_go_tracking_webhook",
    ),
]
