"""Writes for API keys: issue (the key is returned once; only its hash is kept), revoke, touch."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from .models import ApiKey, ApiKeyScope

KEY_PREFIX = "mh"
#: last_used_at is written at most this often per key, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_key(raw_key: str) -> str:
    """The stored form of a key. The secret is 32 random bytes, so a plain SHA-256 suffices."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_create(
    *, name: str, scopes: Iterable[str], created_by: Any = None
) -> tuple[ApiKey, str]:
    """Create a key; return it and the full key text (not stored: it can't be shown again)."""
    api_key = ApiKey(name=name, scopes=list(scopes), created_by=created_by)
    raw_key = api_key_issue(api_key=api_key)
    return api_key, raw_key


def api_key_issue(*, api_key: ApiKey) -> str:
    """Give an unsaved key its secret and save it; return the full key text (shown once)."""
    if api_key.pk is not None:
        raise ValueError(f"API key {api_key.pk} already has a secret; create a new key instead.")
    unknown = set(api_key.scopes) - set(ApiKeyScope.values)
    if unknown:
        raise ValueError(f"Unknown API key scopes: {sorted(unknown)} (one of {ApiKeyScope.values})")
    api_key.scopes = sorted(set(api_key.scopes))
    while True:
        prefix = secrets.token_hex(4)
        if not ApiKey.objects.filter(prefix=prefix).exists():
            break
    raw_key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    api_key.prefix = prefix
    api_key.hashed_key = hash_key(raw_key)
    api_key.save(force_insert=True)
    return raw_key


def api_keys_revoke(*, api_keys: QuerySet[ApiKey]) -> int:
    """Revoke the keys not revoked yet; return how many were."""
    return api_keys.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())


def api_key_touch(*, api_key: ApiKey) -> None:
    """Note that the key was just used (written at most once a minute per key)."""
    now = timezone.now()
    if api_key.last_used_at is not None and now - api_key.last_used_at < LAST_USED_RESOLUTION:
        return
    ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    api_key.last_used_at = now
