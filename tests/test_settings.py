"""Settings come from the environment, with errors that say what to set."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_settings(**env):
    """Import mailhub.settings in a fresh interpreter with exactly env; return (code, output)."""
    clean = {key: value for key, value in os.environ.items() if key in ("PATH", "HOME", "LANG")}
    clean.update(env)
    clean.setdefault("DATABASE_URL", "sqlite:////tmp/mailhub-settings-test.sqlite3")
    script = (
        "import json, mailhub.settings as s; "
        "print(json.dumps({'debug': s.DEBUG, 'engine': s.DATABASES['default']['ENGINE'], "
        "'anymail': s.ANYMAIL, 'mailhub': s.MAILHUB, 'hosts': s.ALLOWED_HOSTS}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=clean, capture_output=True, text=True
    )
    return result.returncode, result.stdout + result.stderr


def test_missing_secret_key_says_how_to_set_it():
    code, output = load_settings(DEBUG="false")
    assert code != 0
    assert "SECRET_KEY is not set. Set the SECRET_KEY environment variable" in output


def test_debug_runs_without_secret_key():
    code, output = load_settings(DEBUG="true")
    assert code == 0, output
    assert '"debug": true' in output


def test_anymail_environment_variables_fill_the_anymail_dict():
    code, output = load_settings(
        SECRET_KEY="x",
        ANYMAIL_MAILGUN_API_KEY="key-123",
        ANYMAIL_IGNORE_RECIPIENT_STATUS="true",
        ANYMAIL_WEBHOOK_SECRET="a:b,c:d",
        MAILHUB_STORE="false",
        ALLOWED_HOSTS="mail.example.com",
    )
    assert code == 0, output
    assert '"MAILGUN_API_KEY": "key-123"' in output
    assert '"IGNORE_RECIPIENT_STATUS": true' in output
    assert '"WEBHOOK_SECRET": ["a:b", "c:d"]' in output
    assert '"STORE": false' in output
    assert '"hosts": ["mail.example.com"]' in output


def test_database_url_selects_postgresql():
    code, output = load_settings(SECRET_KEY="x", DATABASE_URL="postgres://u:p@db:5432/mailhub")
    assert code == 0, output
    assert '"engine": "django.db.backends.postgresql"' in output
