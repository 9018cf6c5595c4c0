"""gunicorn's settings for the dashboard and the Audience API (`gunicorn -c deploy/gunicorn.conf.py`)."""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# Sync workers: a request never waits on a worker (design), so each is short. A page that calls
# the embedded API on this same server takes a second worker meanwhile: with few workers (bin/start
# runs 2), give each threads (GUNICORN_THREADS > 1: gunicorn's gthread workers).
workers = int(os.environ.get("GUNICORN_WORKERS", multiprocessing.cpu_count() * 2 + 1))
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
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
# No control socket (gunicornc): its default path is one per user, which two servers on one
# machine (bin/start beside a test run, say) would fight over.
control_socket_disable = True
