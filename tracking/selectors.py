"""Reads for the tracking app."""

from __future__ import annotations

import datetime

from django.db.models import Count

from .models import WebhookCall, WebhookCallStatus


def webhook_call_counts(*, since: datetime.datetime) -> dict[str, int]:
    """Webhook calls received since since, by processing status (one GROUP BY)."""
    counts = {status: 0 for status in WebhookCallStatus.values}
    for row in (
        WebhookCall.objects.filter(received_at__gte=since)
        .order_by()
        .values("status")
        .annotate(calls=Count("pk"))
    ):
        counts[row["status"]] = row["calls"]
    return counts
