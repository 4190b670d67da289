"""WSGI entry point (gunicorn mailhub.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailhub.settings")

application = get_wsgi_application()
