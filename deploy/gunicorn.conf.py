"""gunicorn's settings for the dashboard and the Audience API (`gunicorn -c deploy/gunicorn.conf.py`)."""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# Sync workers: a request never waits on the API or a worker (design), so each is short.
workers = int(os.environ.get("GUNICORN_WORKERS", multiprocessing.cpu_count() * 2 + 1))
# An upload of up to 500 MB is stored and sniffed inside its request.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "300"))
graceful_timeout = 30
# Recycle workers now and then, so that no slow leak grows for ever.
max_requests = 2000
max_requests_jitter = 200
# The proxy on the same machine (or in front of it) is trusted for X-Forwarded-*.
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")
accesslog = "-"
errorlog = "-"
