"""Inbound webhook URLs: <esp>/inbound/, named <esp>_inbound_webhook (mounted under anymail/).

One line per ESP, in alphabetical order.
"""

from django.urls import path

from .webhooks.sandbox import SandboxInboundWebhookView

urlpatterns = [
    path("sandbox/inbound/", SandboxInboundWebhookView.as_view(), name="sandbox_inbound_webhook"),
]
