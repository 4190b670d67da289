"""Helpers for the admin tests: staff users with chosen permissions, and sent mail."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from sending.backends.sandbox import EmailBackend as SandboxBackend
from sending.message import AnymailMessage


def staff_user(username: str = "staff", perms: tuple[str, ...] = ()):
    """A staff user (not superuser) with exactly perms ("app_label.codename")."""
    user = get_user_model().objects.create_user(username=username, password="pw", is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


def staff_client(username: str = "staff", perms: tuple[str, ...] = ()) -> Client:
    client = Client()
    client.force_login(staff_user(username, perms))
    return client


def sandbox_send(
    *to: str,
    subject: str = "Hello",
    body: str = "Body text",
    html: str | None = None,
    tags: list[str] | None = None,
    metadata: dict | None = None,
    **attrs,
) -> AnymailMessage:
    """Send one message through the sandbox ESP (which also reports tracking events)."""
    message = AnymailMessage(subject, body, "shop@example.com", list(to), **attrs)
    if html is not None:
        message.attach_alternative(html, "text/html")
    if tags is not None:
        message.tags = tags
    if metadata is not None:
        message.metadata = metadata
    SandboxBackend().send_messages([message])
    return message


def record_id(message: AnymailMessage) -> int:
    return message.mailhub_record_id
