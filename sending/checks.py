"""System checks: queue settings mistakes surface at startup, not in a worker at 3 a.m."""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.utils.module_loading import import_string

from .resilience import queue_setting


@checks.register()
def check_queue_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """MAILHUB["QUEUE"]: importable backends, sane retry numbers, positive rate limits."""
    errors: list[checks.CheckMessage] = []
    paths = [("BACKEND", queue_setting("BACKEND"))]
    paths += [("FAILOVER_BACKENDS", path) for path in queue_setting("FAILOVER_BACKENDS") or []]
    for name, path in paths:
        if not path:
            continue
        try:
            import_string(path)
        except ImportError as error:
            errors.append(
                checks.Error(
                    f'MAILHUB["QUEUE"]["{name}"] names {path!r}, which can\'t be imported: {error}',
                    id="mailhub.E101",
                )
            )
    if queue_setting("JITTER") not in ("full", "none"):
        errors.append(
            checks.Error('MAILHUB["QUEUE"]["JITTER"] must be "full" or "none".', id="mailhub.E102")
        )
    numbers = {
        name: queue_setting(name) for name in ("MAX_ATTEMPTS", "BACKOFF_BASE", "BACKOFF_MAX")
    }
    if not all(isinstance(value, int | float) and value > 0 for value in numbers.values()):
        errors.append(
            checks.Error(
                'MAILHUB["QUEUE"]["MAX_ATTEMPTS"], ["BACKOFF_BASE"] and ["BACKOFF_MAX"] must be '
                f"positive numbers (they are {numbers}).",
                id="mailhub.E103",
            )
        )
    for esp, rate in (queue_setting("RATE_LIMITS") or {}).items():
        if not isinstance(rate, int | float) or rate <= 0:
            errors.append(
                checks.Error(
                    f'MAILHUB["QUEUE"]["RATE_LIMITS"]["{esp}"] must be a positive number of '
                    f"messages per second, not {rate!r}.",
                    id="mailhub.E104",
                )
            )
    return errors
