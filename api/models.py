"""API keys: stored as a hash, shown once, scoped, revocable."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class ApiKeyScope(models.TextChoices):
    READ = "read", "Read (GET)"
    WRITE = "write", "Write (POST, DELETE)"


class ApiKeyQuerySet(models.QuerySet):
    def active(self) -> ApiKeyQuerySet:
        return self.filter(revoked_at__isnull=True)


class ApiKey(models.Model):
    """A key for the JSON API: "mh_<prefix>_<secret>", of which only a hash is kept."""

    name = models.CharField(max_length=100, help_text="What uses this key, e.g. 'billing service'")
    prefix = models.CharField(
        max_length=8, unique=True, editable=False, help_text="Identifies the key; not secret"
    )
    hashed_key = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list, help_text='Any of "read", "write"')
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} (mh_{self.prefix}_…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def has_scope(self, scope: str) -> bool:
        return scope in (self.scopes or [])
