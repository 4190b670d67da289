"""API key authentication ("Authorization: Bearer <key>" or "Authorization: Api-Key <key>")
and the scope permission that goes with it."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.utils.functional import SimpleLazyObject
from rest_framework import exceptions, permissions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from .models import ApiKey, ApiKeyScope
from .selectors import api_key_get
from .services import api_key_touch

KEYWORDS = ("bearer", "api-key")


class ApiKeyAuthentication(BaseAuthentication):
    """Authenticate by an API key; request.auth is the ApiKey, request.user its creator."""

    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        header = get_authorization_header(request).split()
        if not header or header[0].decode("latin-1").lower() not in KEYWORDS:
            return None  # not ours: no credentials, or another scheme
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(
                "Invalid Authorization header: expected 'Bearer <API key>'."
            )
        try:
            raw_key = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid API key.") from None
        api_key = api_key_get(raw_key=raw_key)
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid API key.")
        if not api_key.is_active:
            raise exceptions.AuthenticationFailed("This API key was revoked.")
        api_key_touch(api_key=api_key)
        # Lazy: only writes ask who acts, so reads skip the query for the user.
        return SimpleLazyObject(lambda: api_key.created_by or AnonymousUser()), api_key

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (not 403) when credentials are missing or wrong.
        return 'Bearer realm="api"'


class HasApiKeyScope(permissions.BasePermission):
    """Reads need the "read" scope; writes (POST, PUT, PATCH, DELETE) need "write"."""

    def has_permission(self, request: Request, view: Any) -> bool:
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            return False  # DRF turns this into 401 when no key was given
        needed = (
            ApiKeyScope.READ if request.method in permissions.SAFE_METHODS else ApiKeyScope.WRITE
        )
        if not api_key.has_scope(needed):
            self.message = f"This API key lacks the '{needed.value}' scope."
            return False
        return True
