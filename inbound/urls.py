"""Inbound webhook URLs: <esp>/inbound/, named <esp>_inbound_webhook (mounted under anymail/).

One line per ESP, in alphabetical order.
"""

from django.urls import path, re_path

from .webhooks.amazon_ses import AmazonSESInboundWebhookView
from .webhooks.brevo import BrevoInboundWebhookView
from .webhooks.mailersend import MailerSendInboundWebhookView
from .webhooks.mailgun import MailgunInboundWebhookView
from .webhooks.mailjet import MailjetInboundWebhookView
from .webhooks.mandrill import MandrillCombinedWebhookView, MandrillInboundWebhookView
from .webhooks.postal import PostalInboundWebhookView
from .webhooks.postmark import PostmarkInboundWebhookView
from .webhooks.resend import ResendInboundWebhookView
from .webhooks.sandbox import SandboxInboundWebhookView
from .webhooks.sendgrid import SendGridInboundWebhookView
from .webhooks.sendinblue import SendinBlueInboundWebhookView
from .webhooks.sparkpost import SparkPostInboundWebhookView

urlpatterns = [
    path(
        "amazon_ses/inbound/",
        AmazonSESInboundWebhookView.as_view(),
        name="amazon_ses_inbound_webhook",
    ),
    path("brevo/inbound/", BrevoInboundWebhookView.as_view(), name="brevo_inbound_webhook"),
    path(
        "mailersend/inbound/",
        MailerSendInboundWebhookView.as_view(),
        name="mailersend_inbound_webhook",
    ),
    # Mailgun posts raw MIME to a route URL that ends in "mime": .../mailgun/inbound_mime/
    re_path(
        r"^mailgun/inbound(?:_mime)?/$",
        MailgunInboundWebhookView.as_view(),
        name="mailgun_inbound_webhook",
    ),
    path("mailjet/inbound/", MailjetInboundWebhookView.as_view(), name="mailjet_inbound_webhook"),
    # Mandrill's documented URL serves tracking webhooks and inbound routes alike
    # (tracking may not import inbound, so it's registered here, not in tracking.urls).
    path("mandrill/", MandrillCombinedWebhookView.as_view(), name="mandrill_webhook"),
    path(
        "mandrill/inbound/", MandrillInboundWebhookView.as_view(), name="mandrill_inbound_webhook"
    ),
    path("postal/inbound/", PostalInboundWebhookView.as_view(), name="postal_inbound_webhook"),
    path(
        "postmark/inbound/", PostmarkInboundWebhookView.as_view(), name="postmark_inbound_webhook"
    ),
    path("resend/inbound/", ResendInboundWebhookView.as_view(), name="resend_inbound_webhook"),
    path("sandbox/inbound/", SandboxInboundWebhookView.as_view(), name="sandbox_inbound_webhook"),
    path(
        "sendgrid/inbound/", SendGridInboundWebhookView.as_view(), name="sendgrid_inbound_webhook"
    ),
    # The former name of Brevo: kept for inbound webhooks set up before the rename.
    path(
        "sendinblue/inbound/",
        SendinBlueInboundWebhookView.as_view(),
        name="sendinblue_inbound_webhook",
    ),
    path(
        "sparkpost/inbound/",
        SparkPostInboundWebhookView.as_view(),
        name="sparkpost_inbound_webhook",
    ),
]
