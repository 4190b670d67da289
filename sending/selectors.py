"""Reads for the sending app: delivery statistics, message pages, resend previews.

Statistics are aggregate queries (one GROUP BY per breakdown); nothing here
loops over rows of the big tables in Python.
"""

from __future__ import annotations

import base64
import datetime
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Any

from django.db.models import Count, Prefetch, Q, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.module_loading import import_string

from .exceptions import AnymailError
from .models import Message, Recipient, SendStatus, StoredAttachment
from .services import suppressed_addresses
from .signals import EventType
from .utils import get_mailhub_setting

#: The dashboard's windows, in days.
STATS_WINDOWS = (7, 30, 90)
#: How many tags the per-tag breakdown shows (the busiest ones).
TOP_TAGS = 8
UNTAGGED = "(no tag)"

_ACCEPTED = (SendStatus.SENT, SendStatus.QUEUED)
_SEND_FAILED = (SendStatus.FAILED, SendStatus.REJECTED, SendStatus.INVALID)
# Engagement and complaints prove delivery, for ESPs that report no "delivered".
_DELIVERED_STATES = (
    EventType.DELIVERED,
    EventType.OPENED,
    EventType.CLICKED,
    EventType.UNSUBSCRIBED,
    EventType.COMPLAINED,
)


@dataclass(frozen=True)
class DeliveryCounts:
    """Recipients by outcome. Outcomes overlap: an opened recipient is also delivered."""

    sent: int = 0
    delivered: int = 0
    bounced: int = 0
    complained: int = 0
    opened: int = 0
    clicked: int = 0
    failed: int = 0
    suppressed: int = 0

    @property
    def bounce_rate(self) -> float | None:
        """Bounced recipients per recipient the ESP accepted (None: nothing sent)."""
        return self.bounced / self.sent if self.sent else None

    @property
    def complaint_rate(self) -> float | None:
        """Complaints per recipient the ESP accepted (None: nothing sent)."""
        return self.complained / self.sent if self.sent else None

    def __add__(self, other: DeliveryCounts) -> DeliveryCounts:
        return DeliveryCounts(
            **{name: getattr(self, name) + getattr(other, name) for name in METRICS}
        )

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> DeliveryCounts:
        return cls(**{name: row[name] or 0 for name in METRICS})


METRICS = tuple(field.name for field in fields(DeliveryCounts))


@dataclass(frozen=True)
class DeliveryStats:
    computed_at: datetime.datetime
    since: datetime.datetime
    days: list[datetime.date]
    totals: DeliveryCounts
    per_day: list[tuple[datetime.date, DeliveryCounts]]
    per_esp: list[tuple[str, DeliveryCounts]]
    per_tag: list[tuple[str, DeliveryCounts]]


def _metric_counts() -> dict[str, Count]:
    return {
        "sent": Count("pk", filter=Q(send_status__in=_ACCEPTED)),
        "delivered": Count(
            "pk", filter=Q(delivered_at__isnull=False) | Q(status__in=_DELIVERED_STATES)
        ),
        "bounced": Count("pk", filter=Q(bounced_at__isnull=False) | Q(status=EventType.BOUNCED)),
        "complained": Count("pk", filter=Q(status=EventType.COMPLAINED)),
        "opened": Count("pk", filter=Q(open_count__gt=0)),
        "clicked": Count("pk", filter=Q(click_count__gt=0)),
        "failed": Count(
            "pk",
            filter=Q(send_status__in=_SEND_FAILED)
            | Q(status__in=(EventType.REJECTED, EventType.FAILED)),
        ),
        "suppressed": Count("pk", filter=Q(send_status=SendStatus.SUPPRESSED)),
    }


def stats_window_start(*, days: int, now: datetime.datetime | None = None) -> datetime.datetime:
    """Local midnight days-1 days ago: a 7-day window is today and the 6 days before."""
    now = timezone.localtime(now or timezone.now())
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return today - datetime.timedelta(days=days - 1)


#: One day's breakdown: (ESP, tags, counts) per distinct ESP and tag list.
DayGroups = list[tuple[str, tuple[str, ...], DeliveryCounts]]


def delivery_day_groups(days: list[datetime.date]) -> dict[datetime.date, DayGroups]:
    """The recipient outcomes of the messages created on each of days (local dates).

    One scan per run of consecutive days, grouped by everything the
    dashboard breaks down by (day x ESP x distinct tag list: a few thousand
    rows at most). Every day asked for is in the result, empty or not.
    """
    groups: dict[datetime.date, DayGroups] = {day: [] for day in days}
    for first, last in _runs(sorted(days)):
        rows = (
            Recipient.objects.filter(
                message__created_at__gte=_local_midnight(first),
                message__created_at__lt=_local_midnight(last + datetime.timedelta(days=1)),
            )
            .order_by()
            .annotate(day=TruncDate("message__created_at"))
            .values("day", "esp", "message__tags")
            .annotate(**_metric_counts())
        )
        for row in rows:
            tags = tuple(sorted({str(tag) for tag in row["message__tags"] or []}))
            groups[row["day"]].append((row["esp"], tags, DeliveryCounts.from_row(row)))
    return groups


def delivery_stats(
    *,
    days: int,
    now: datetime.datetime | None = None,
    day_groups: Callable[[list[datetime.date]], dict[datetime.date, DayGroups]] = (
        delivery_day_groups
    ),
) -> DeliveryStats:
    """Recipient outcomes of the messages created in the last days days.

    Each recipient counts on the day its message was sent (in the current
    time zone), with the outcome it has now, so rates compare like with like.
    day_groups gives each day's breakdown (the dashboard passes one that
    keeps past days for a while).
    """
    if days not in STATS_WINDOWS:
        raise ValueError(f"days must be one of {STATS_WINDOWS}, not {days!r}")
    since = stats_window_start(days=days, now=now)
    day_list = [since.date() + datetime.timedelta(days=offset) for offset in range(days)]
    by_day: dict[datetime.date, DeliveryCounts] = defaultdict(DeliveryCounts)
    by_esp: dict[str, DeliveryCounts] = defaultdict(DeliveryCounts)
    by_tag: dict[str, DeliveryCounts] = defaultdict(DeliveryCounts)
    for day, groups in day_groups(day_list).items():
        for esp, tags, counts in groups:
            by_day[day] += counts
            by_esp[esp] += counts
            for tag in tags or (UNTAGGED,):
                by_tag[tag] += counts

    per_day = [(day, by_day.get(day, DeliveryCounts())) for day in day_list]
    per_esp = sorted(by_esp.items(), key=lambda item: (-item[1].sent, item[0]))
    per_tag = sorted(by_tag.items(), key=lambda item: (-item[1].sent, item[0]))
    totals = sum((counts for _, counts in per_esp), DeliveryCounts())
    return DeliveryStats(
        computed_at=timezone.now(),
        since=since,
        days=day_list,
        totals=totals,
        per_day=per_day,
        per_esp=per_esp,
        per_tag=per_tag[:TOP_TAGS],
    )


def _local_midnight(day: datetime.date) -> datetime.datetime:
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time()))


def _runs(days: list[datetime.date]) -> list[tuple[datetime.date, datetime.date]]:
    """Sorted days as (first, last) runs of consecutive days."""
    runs: list[tuple[datetime.date, datetime.date]] = []
    for day in days:
        if runs and runs[-1][1] + datetime.timedelta(days=1) == day:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def rate_thresholds() -> tuple[float, float]:
    """(bounce rate, complaint rate) above which the dashboard warns."""
    return (
        float(get_mailhub_setting("BOUNCE_RATE_WARNING", 0.05)),
        float(get_mailhub_setting("COMPLAINT_RATE_WARNING", 0.001)),
    )


# ---------------------------------------------------------------------------
# ESPs and backends


def esp_key_for(backend_class: type) -> str:
    """The ESP key a backend class records ("amazon_ses"), without instantiating it."""
    return backend_class.esp_name.upper().replace(" ", "_").lower()


def known_esps() -> list[str]:
    """ESP keys the admin filters offer: every bundled backend's, plus configured ones.

    A fixed list, so filtering a huge table doesn't first scan it for its
    distinct values.
    """
    from .features import ESP_BACKENDS

    paths = [
        *ESP_BACKENDS,
        "sending.backends.sandbox.EmailBackend",
        "sending.backends.console.EmailBackend",
        "sending.backends.test.EmailBackend",
        *resend_backend_paths(),
    ]
    keys = set()
    for path in paths:
        try:
            keys.add(esp_key_for(import_string(path)))
        except (ImportError, AttributeError):
            continue
    return sorted(keys)


SANDBOX_BACKEND = "sending.backends.sandbox.EmailBackend"


def resend_backend_paths() -> list[str]:
    """Backends a message may be resent through, besides its own: the sandbox and
    MAILHUB["RESEND_BACKENDS"]."""
    configured = get_mailhub_setting("RESEND_BACKENDS", [])
    paths = [SANDBOX_BACKEND]
    paths += [path for path in configured if path not in paths]
    return paths


def backend_label(path: str) -> str:
    try:
        return f"{import_string(path).esp_name} ({path})"
    except (ImportError, AttributeError):
        return path


# ---------------------------------------------------------------------------
# The message page


def message_recipients(*, message: Message) -> list[Recipient]:
    """The message's recipients, each with its event timeline (oldest first) prefetched.

    ``events`` is the reverse of the tracking app's Event.recipient; sending
    doesn't import tracking.
    """
    return list(
        message.recipients.order_by("pk").prefetch_related(Prefetch("events", to_attr="timeline"))
    )


#: Image types an inline (cid:) image may be shown as, in a data: URI.
INLINE_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
#: Largest inline image turned into a data: URI for the preview.
INLINE_IMAGE_MAX_BYTES = 2 * 1024 * 1024


def message_html_for_preview(*, message: Message) -> str | None:
    """The message's HTML with cid: images of its own inline attachments as data: URIs.

    The HTML is returned as stored otherwise: it must only be shown in a
    sandboxed frame under a Content-Security-Policy.
    """
    html = message.html_body
    if not html or "cid:" not in html:
        return html
    inline = StoredAttachment.objects.filter(
        message=message, inline=True, mimetype__in=INLINE_IMAGE_TYPES
    ).exclude(content_id="")
    for attachment in inline:
        if not attachment.file or attachment.size > INLINE_IMAGE_MAX_BYTES:
            continue
        with attachment.file.open("rb") as file:
            content = file.read()
        data_uri = f"data:{attachment.mimetype};base64,{base64.b64encode(content).decode()}"
        html = html.replace(f"cid:{attachment.content_id.strip('<>')}", data_uri)
    return html


# ---------------------------------------------------------------------------
# Resend preview


@dataclass
class ResendPlan:
    """What resending one message will do."""

    message: Message
    backend_path: str
    esp: str
    recipients: list[str]
    skipped: list[str]  # suppressed: they won't be sent to
    problem: str = ""  # why it can't be resent, if it can't

    @property
    def will_send(self) -> bool:
        return not self.problem and len(self.skipped) < len(self.recipients)


def resend_plans(*, messages: Iterable[Message], backend_path: str | None) -> list[ResendPlan]:
    """For each message: the backend it would go through, its recipients, and which of
    them are suppressed (so will be skipped). One query for the recipients, one per ESP."""
    messages = list(messages)
    recipients: dict[int, list[str]] = defaultdict(list)
    for message_id, address in (
        Recipient.objects.filter(message__in=messages)
        .order_by("pk")
        .values_list("message_id", "address")
    ):
        recipients[message_id].append(address)

    esp_by_backend: dict[str, str | AnymailError] = {}
    plans = []
    for message in messages:
        path = backend_path or message.backend
        if path not in esp_by_backend:
            try:
                esp_by_backend[path] = import_string(path)().esp_key
            except AnymailError as error:  # not configured (missing API key...)
                esp_by_backend[path] = error
            except ImportError as error:
                esp_by_backend[path] = AnymailError(f"Can't import backend {path!r}: {error}")
        esp = esp_by_backend[path]
        plan = ResendPlan(
            message=message,
            backend_path=path,
            esp=esp if isinstance(esp, str) else "",
            recipients=recipients[message.pk],
            skipped=[],
        )
        if not isinstance(esp, str):
            plan.problem = f"Backend unavailable: {esp}"
        elif not message.content_stored:
            plan.problem = "Its content was not stored, so it can't be rebuilt."
        plans.append(plan)

    by_esp: dict[str, set[str]] = defaultdict(set)
    for plan in plans:
        if plan.esp:
            by_esp[plan.esp].update(plan.recipients)
    suppressed = {
        esp: suppressed_addresses(addresses=addresses, esp=esp) for esp, addresses in by_esp.items()
    }
    for plan in plans:
        if plan.esp:
            plan.skipped = [a for a in plan.recipients if a in suppressed[plan.esp]]
    return plans


def messages_by_ids(*, ids: Iterable[int]) -> QuerySet[Message]:
    return Message.objects.filter(pk__in=list(ids)).order_by("-created_at", "-pk")


# ---------------------------------------------------------------------------
# Selecting messages (the resend command)


def messages_matching(
    *,
    ids: Iterable[int] | None = None,
    esp_message_id: str | None = None,
    recipient: str | None = None,
    status: str | None = None,
    esp: str | None = None,
    since: datetime.datetime | None = None,
    until: datetime.datetime | None = None,
) -> QuerySet[Message]:
    """Messages meeting every criterion given (since <= created_at < until), oldest first."""
    messages = Message.objects.all()
    if ids:
        messages = messages.filter(pk__in=list(ids))
    if esp_message_id:
        messages = messages.by_esp_message_id(esp_message_id)
    if recipient:
        messages = messages.for_recipient(recipient)
    if status:
        messages = messages.filter(status=status)
    if esp:
        messages = messages.for_esp(esp)
    if since:
        messages = messages.filter(created_at__gte=since)
    if until:
        messages = messages.filter(created_at__lt=until)
    return messages.order_by("created_at", "pk")
