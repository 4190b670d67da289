"""Settings for the test suite: the project settings with test-safe environment defaults."""

import os
import tempfile

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("DEBUG", "false")
# Each test computes the admin dashboard's statistics afresh.
os.environ.setdefault("MAILHUB_DASHBOARD_CACHE_SECONDS", "0")
os.environ.setdefault("MAILHUB_DASHBOARD_DAY_CACHE_SECONDS", "0")

from mailhub.settings import *  # noqa: E402,F403

MEDIA_ROOT = tempfile.mkdtemp(prefix="mailhub-test-media-")
STATIC_ROOT = tempfile.mkdtemp(prefix="mailhub-test-static-")
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}  # noqa: F405
ANYMAIL = {}
