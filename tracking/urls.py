"""Tracking webhook URLs: <esp>/tracking/, named <esp>_tracking_webhook (mounted under anymail/).

One line per ESP, in alphabetical order.
"""

from django.urls import path

from .webhooks.sandbox import SandboxTrackingWebhookView

urlpatterns = [
    path("sandbox/tracking/", SandboxTrackingWebhookView.as_view(), name="sandbox_tracking_webhook"),
]
