"""Shared fixtures: choosing a backend the way users do, and HTTP mocking."""

from __future__ import annotations

import django
import pytest
import responses as responses_lib
from django.test import override_settings
from django.utils.module_loading import import_string

DJANGO_HAS_MAILERS = django.VERSION >= (6, 1)


def make_backend(path: str, **options):
    """Instantiate an email backend by dotted path, with options (both Django versions)."""
    return import_string(path)(**options)


def email_backend_settings(path: str, **options) -> override_settings:
    """Settings that make `path` Django's default email backend.

    Django 5.2 reads EMAIL_BACKEND; Django 6.1 reads MAILERS (BACKEND + OPTIONS).
    Options go to the backend constructor on 6.1; on 5.2 pass them as
    ANYMAIL settings instead.
    """
    if DJANGO_HAS_MAILERS:
        return override_settings(MAILERS={"default": {"BACKEND": path, "OPTIONS": options}})
    return override_settings(EMAIL_BACKEND=path)


@pytest.fixture
def use_backend():
    """use_backend("sending.backends.test.EmailBackend"): make it the default backend."""
    active = []

    def activate(path: str, **options):
        overrider = email_backend_settings(path, **options)
        overrider.enable()
        active.append(overrider)

    yield activate
    for overrider in reversed(active):
        overrider.disable()


@pytest.fixture
def http():
    """A responses.RequestsMock that fails the test if a registered call is not made."""
    with responses_lib.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def no_store(settings):
    """Recording off: backends must not touch the database."""
    settings.MAILHUB = {**settings.MAILHUB, "STORE": False}
