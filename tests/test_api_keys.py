"""API keys: hashed at rest, shown once, scoped, revocable; the schema and docs page."""

import hashlib
import io
import json
import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from api.models import ApiKey
from api.services import api_key_create

pytestmark = pytest.mark.django_db


def auth(raw_key, scheme="Bearer"):
    return {"HTTP_AUTHORIZATION": f"{scheme} {raw_key}"}


def test_key_is_stored_only_as_a_hash():
    api_key, raw = api_key_create(name="billing", scopes=["read"])
    assert re.fullmatch(r"mh_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", raw)
    api_key.refresh_from_db()
    assert api_key.prefix == raw[3:11]
    assert api_key.hashed_key == hashlib.sha256(raw.encode()).hexdigest()
    secret = raw[12:]
    assert not any(
        secret in str(value) for value in ApiKey.objects.values().get(pk=api_key.pk).values()
    )


def test_unknown_scopes_are_refused():
    with pytest.raises(ValueError, match="admin"):
        api_key_create(name="x", scopes=["read", "admin"])
    assert not ApiKey.objects.exists()


def test_anonymous_requests_are_401_with_a_challenge(client):
    response = client.get("/api/messages/")
    assert response.status_code == 401
    assert response.json()["detail"]
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer a b",
        "Bearer mh_00000000_nope",
        "Bearer not-a-key",
        "Api-Key mh_zz_zz",
    ],
)
def test_bad_keys_are_401(client, header):
    api_key_create(name="real", scopes=["read"])
    response = client.get("/api/messages/", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response.json()["detail"]


def test_a_key_with_a_wrong_secret_is_401(client):
    _key, raw = api_key_create(name="real", scopes=["read"])
    response = client.get("/api/messages/", **auth(raw[:-1] + ("A" if raw[-1] != "A" else "B")))
    assert response.status_code == 401


def test_both_header_schemes_work(client):
    _key, raw = api_key_create(name="real", scopes=["read"])
    assert client.get("/api/messages/", **auth(raw)).status_code == 200
    assert client.get("/api/messages/", **auth(raw, "Api-Key")).status_code == 200


def test_revoked_key_is_401(client):
    api_key, raw = api_key_create(name="old", scopes=["read", "write"])
    ApiKey.objects.filter(pk=api_key.pk).update(revoked_at=timezone.now())
    response = client.get("/api/messages/", **auth(raw))
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


def test_write_only_key_cannot_read(client):
    _key, raw = api_key_create(name="writer", scopes=["write"])
    response = client.get("/api/suppressions/", **auth(raw))
    assert response.status_code == 403
    assert "read" in response.json()["detail"]


def test_a_logged_in_admin_session_is_not_an_api_key(admin_client):
    assert admin_client.get("/api/messages/").status_code == 401


def test_last_used_is_written_at_most_once_a_minute(client):
    api_key, raw = api_key_create(name="k", scopes=["read"])
    client.get("/api/messages/", **auth(raw))
    api_key.refresh_from_db()
    first = api_key.last_used_at
    assert first is not None

    client.get("/api/messages/", **auth(raw))
    api_key.refresh_from_db()
    assert api_key.last_used_at == first

    ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=first - timedelta(minutes=2))
    client.get("/api/messages/", **auth(raw))
    api_key.refresh_from_db()
    assert api_key.last_used_at > first


# ---------------------------------------------------------------------------
# Admin


def test_admin_creates_a_key_and_shows_it_once(admin_client, admin_user):
    response = admin_client.post(
        reverse("admin:api_apikey_add"), {"name": "billing", "scopes": ["read"]}, follow=True
    )
    assert response.status_code == 200
    shown = " ".join(str(m) for m in response.context["messages"])
    [raw] = re.findall(r"mh_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", shown)
    api_key = ApiKey.objects.get()
    assert (api_key.name, api_key.scopes, api_key.created_by) == ("billing", ["read"], admin_user)
    assert admin_client.get("/api/messages/", **auth(raw)).status_code == 200

    secret = raw[12:]
    for url in (
        reverse("admin:api_apikey_changelist"),
        reverse("admin:api_apikey_change", args=[api_key.pk]),
    ):
        page = admin_client.get(url).content.decode()
        assert secret not in page and api_key.hashed_key not in page
        assert f"mh_{api_key.prefix}_" in page


def test_admin_add_form_needs_a_scope(admin_client):
    response = admin_client.post(reverse("admin:api_apikey_add"), {"name": "x", "scopes": []})
    assert response.status_code == 200  # the form again, with its error
    assert not ApiKey.objects.exists()


def test_admin_revoke_action(admin_client):
    api_key, raw = api_key_create(name="leaked", scopes=["read"])
    response = admin_client.post(
        reverse("admin:api_apikey_changelist"),
        {"action": "revoke", "_selected_action": [api_key.pk]},
        follow=True,
    )
    assert response.status_code == 200
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
    assert admin_client.get("/api/messages/", **auth(raw)).status_code == 401


def test_staff_without_permission_cannot_manage_keys(client):
    user = get_user_model().objects.create_user("staff", password="x", is_staff=True)
    client.force_login(user)
    api_key, _raw = api_key_create(name="k", scopes=["read"])
    assert client.get(reverse("admin:api_apikey_add")).status_code == 403
    response = client.post(
        reverse("admin:api_apikey_changelist"),
        {"action": "revoke", "_selected_action": [api_key.pk]},
    )
    assert response.status_code == 403
    api_key.refresh_from_db()
    assert api_key.revoked_at is None


def test_anonymous_users_are_sent_to_the_admin_login(client):
    response = client.get(reverse("admin:api_apikey_add"))
    assert response.status_code == 302 and "login" in response["Location"]


# ---------------------------------------------------------------------------
# OpenAPI schema and docs


def test_schema_generates_without_warnings_or_errors(tmp_path):
    out = tmp_path / "schema.json"
    call_command(
        "spectacular",
        "--validate",
        "--fail-on-warn",
        "--format",
        "openapi-json",
        "--file",
        str(out),
        stderr=io.StringIO(),
    )
    schema = json.loads(out.read_text())
    assert {
        "/api/messages/",
        "/api/messages/{id}/",
        "/api/messages/{id}/resend/",
        "/api/recipients/",
        "/api/events/",
        "/api/suppressions/",
        "/api/suppressions/{id}/",
    } <= set(schema["paths"])
    assert schema["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"


def test_schema_is_served(client):
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    assert response.json()["info"]["title"] == "mailhub API"


def test_docs_page_uses_only_local_assets(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "/api/schema/" in page
    scripts = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert scripts and not [url for url in scripts if "//" in url]
    for url in scripts:
        assert url.startswith("/static/")
        assert finders.find(url.removeprefix("/static/")), url
