from __future__ import annotations

import importlib
import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

from dashboard import processes

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")

application = get_wsgi_application()

# Every page's and API route's module is imported now, as the process starts, instead of by its
# first request, which would otherwise be slower than the next ones.
importlib.import_module(settings.ROOT_URLCONF)
processes.freeze_startup_objects()
