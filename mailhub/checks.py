"""System checks for the admin's settings: mistakes show at startup, not mid-operation."""

from __future__ import annotations

from django.core import checks
from django.utils.module_loading import import_string


@checks.register(checks.Tags.compatibility)
def check_admin_settings(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    from sending.backends.base import AnymailBaseBackend
    from sending.utils import get_mailhub_setting

    errors: list[checks.CheckMessage] = []
    backends = get_mailhub_setting("RESEND_BACKENDS", [])
    if isinstance(backends, str) or not isinstance(backends, list | tuple):
        errors.append(
            checks.Error(
                'MAILHUB["RESEND_BACKENDS"] must be a list of backend dotted paths.',
                hint='e.g. ["sending.backends.postmark.EmailBackend"]',
                id="mailhub.admin.E001",
            )
        )
        backends = []
    for path in backends:
        try:
            backend_class = import_string(path)
        except ImportError as error:
            backend_class, problem = None, f"can't be imported ({error})"
        else:
            problem = "isn't a mailhub ESP backend"
        if not (isinstance(backend_class, type) and issubclass(backend_class, AnymailBaseBackend)):
            errors.append(
                checks.Error(
                    f'MAILHUB["RESEND_BACKENDS"] entry {path!r} {problem}.',
                    hint="List EmailBackend classes from sending.backends.<esp>.",
                    id="mailhub.admin.E002",
                )
            )
    for name in ("BOUNCE_RATE_WARNING", "COMPLAINT_RATE_WARNING"):
        value = get_mailhub_setting(name, 0.0)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            errors.append(
                checks.Error(
                    f'MAILHUB["{name}"] must be a rate between 0 and 1, not {value!r}.',
                    hint="e.g. 0.05 for 5%.",
                    id="mailhub.admin.E003",
                )
            )
    return errors
