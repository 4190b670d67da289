"""Create the quick-start admin user (once) and print its login."""

import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create a superuser with a random password (if none exists) and print the login."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--email", default="admin@localhost")

    def handle(self, *args, username: str, email: str, **options):
        # The password is kept beside the SQLite database, readable only by
        # this user, so restarting the quick start prints the same login.
        login_file = Path(settings.MEDIA_ROOT).parent / "admin-login.txt"
        user_model = get_user_model()
        user = user_model.objects.filter(username=username).first()
        password = None
        if user is None:
            password = secrets.token_urlsafe(12)
            user_model.objects.create_superuser(username=username, email=email, password=password)
            login_file.parent.mkdir(parents=True, exist_ok=True)
            login_file.write_text(password)
            login_file.chmod(0o600)
        elif login_file.exists() and user.check_password(login_file.read_text().strip()):
            password = login_file.read_text().strip()

        if password is None:
            self.stdout.write(
                f"Admin user {username!r} already exists (its password was changed; "
                f"use `manage.py changepassword {username}` to reset it)."
            )
        else:
            self.stdout.write(f"Admin login: username {username}  password {password}")
