"""Operations that span mailhub's apps.

Each app owns the erasure of its own records; this module calls them in one
transaction, so an erasure request is either carried out everywhere or not
at all. Data retention (purge) likewise calls each app's purge services.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone

from inbound.services import inbound_forget
from sending.services import messages_purge, messages_purge_content, recipient_forget
from sending.utils import get_mailhub_setting, normalize_address
from tracking.services import events_forget, events_purge, webhook_calls_purge


def forget_address(
    *, address: str, keep_suppression: bool = True, dry_run: bool = False
) -> dict[str, int]:
    """Forget address everywhere mailhub recorded it (an erasure request); return counts.

    keep_suppression keeps the address's suppressions, so it is still never
    mailed. With dry_run everything is done and then rolled back, so the
    counts are exactly what a real run would change; files are only deleted
    after a commit, so a dry run touches none.
    """
    normalized = normalize_address(address)
    if "@" not in normalized:
        raise ValueError(f"Not an email address: {address!r}")
    counts: dict[str, int] = {}
    with transaction.atomic():
        counts.update(events_forget(address=normalized))
        counts.update(recipient_forget(address=normalized, keep_suppression=keep_suppression))
        counts.update(inbound_forget(address=normalized))
        if dry_run:
            transaction.set_rollback(True)
    return counts


# ---------------------------------------------------------------------------
# Retention (manage.py purge)

#: What each retention setting purges, in the order they run: events and
#: webhook calls first, so deleting messages has fewer events to unlink.
#: Content goes before whole messages so a dry run's counts are exactly a
#: real run's (once purges run regularly, messages old enough to delete lost
#: their content long before).
RETENTION_PURGES: dict[str, Callable[..., int]] = {
    "events_days": events_purge,
    "webhook_calls_days": webhook_calls_purge,
    "message_content_days": messages_purge_content,
    "messages_days": messages_purge,
}


def retention_cutoffs(*, now: datetime | None = None) -> dict[str, datetime | None]:
    """For each MAILHUB["RETENTION"] setting, the time before which records go (None: keep)."""
    retention = get_mailhub_setting("RETENTION", {})
    now = now or timezone.now()
    cutoffs: dict[str, datetime | None] = {}
    for name in RETENTION_PURGES:
        days = retention.get(name)
        if days is None:
            cutoffs[name] = None
        elif isinstance(days, int) and not isinstance(days, bool) and days >= 1:
            cutoffs[name] = now - timedelta(days=days)
        else:
            raise ImproperlyConfigured(
                f'MAILHUB["RETENTION"]["{name}"] must be a whole number of days (1 or more) '
                f"or None to keep forever, not {days!r}."
            )
    return cutoffs


def retention_purge(
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    on_batch: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Purge what MAILHUB["RETENTION"] says is too old; return counts by setting name.

    Each kind is purged in batches, each batch its own transaction, so a
    long purge holds no lock for long and an interrupted one can simply be
    run again. on_batch(setting name, rows) is called after each batch.
    """
    counts = {}
    for name, before in retention_cutoffs(now=now).items():
        if before is None:
            continue
        report = partial(on_batch, name) if on_batch else None
        counts[name] = RETENTION_PURGES[name](before=before, dry_run=dry_run, on_batch=report)
    return counts
