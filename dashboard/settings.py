"""Settings, read from environment variables (see README.md for every one of them)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from dashboard.env import env_bool, env_choice, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("DATA_DIR", str(BASE_DIR / "data")))
DATA_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DJANGO_DEBUG", False)


def _secret_key() -> str:
    key = env_str("DJANGO_SECRET_KEY")
    if key:
        return key
    # Development default: a random key kept in the git-ignored data folder, so sessions
    # survive restarts and nothing secret is ever committed.
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.humanize",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "django_tasks",
    "django_tasks_db",
    "audiences",
    "dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "audiences.faults.FaultInjectionMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "dashboard.audit.CurrentRequestMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "dashboard.middleware.MethodNotAllowedPageMiddleware",
]

ROOT_URLCONF = "dashboard.urls"
WSGI_APPLICATION = "dashboard.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "dashboard.context_processors.navigation",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------

DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'db.sqlite3'}"
# Seconds a web process keeps its database connection (0: one per request).
DATABASE_CONN_MAX_AGE = env_int("DATABASE_CONN_MAX_AGE", 0, minimum=0)
# Seconds a worker's thread keeps its own: its threads poll the queue several times a second,
# and opening a connection for every poll cost more than the poll (0: one per poll or task).
WORKER_DATABASE_CONN_MAX_AGE = env_int("WORKER_DATABASE_CONN_MAX_AGE", 300, minimum=0)
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=DATABASE_CONN_MAX_AGE)}
# SQLite only: the size of write-ahead log (MB, of 4 KB pages) at which a write copies it back
# into the database itself, and seconds without a write after which the worker does.
SQLITE_CHECKPOINT_MB = env_int("SQLITE_CHECKPOINT_MB", 64, minimum=1)
SQLITE_QUIET_CHECKPOINT = env_float("SQLITE_QUIET_CHECKPOINT", 0.5)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server read while the worker writes; IMMEDIATE transactions take the
    # write lock up front (no lock-upgrade deadlocks), and the busy timeout makes writers wait
    # for each other instead of failing with "database is locked".
    #
    # The write-ahead log is copied back into the database (a checkpoint) by the worker once
    # the database has been quiet for a moment (SQLITE_QUIET_CHECKPOINT), not by whichever
    # write happens to fill SQLite's default 4 MB of it: that copy held up the write that
    # made it, a tenth of every big insert. A write still checkpoints past
    # SQLITE_CHECKPOINT_MB (no worker running, or never a quiet moment).
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
            f"PRAGMA wal_autocheckpoint={SQLITE_CHECKPOINT_MB * 256}; "
            f"PRAGMA journal_size_limit={SQLITE_CHECKPOINT_MB * 1024 * 1024};"
        ),
    }
    # A file (not memory), so that worker processes started by tests share it; one per test run
    # so that two runs on one machine never trip over each other.
    DATABASES["default"].setdefault("TEST", {})["NAME"] = str(
        DATA_DIR / f"test-db-{os.getpid()}.sqlite3"
    )
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # One test database per test run, as for SQLite: two runs against one server (CI beside
    # a developer) would otherwise drop each other's test_<name> database.
    DATABASES["default"].setdefault("TEST", {})["NAME"] = (
        f"test_{DATABASES['default']['NAME']}_{os.getpid()}"
    )
else:
    raise ImproperlyConfigured("DATABASE_URL must be a sqlite:// or postgres:// URL")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Background tasks -----------------------------------------------------------------------

TASK_BACKEND = env_choice("TASK_BACKEND", "db", ("db", "rq", "immediate"))
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
# The embedded API's applies have a queue of their own, listed first: an RQ worker takes its jobs
# before the dashboard's, and `manage.py worker` on the db backend runs it in a lane of its own,
# so a long send never holds up the applies it feeds.
TASK_QUEUES = ["audiences", "default"]
if TASK_BACKEND == "db":
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": TASK_QUEUES}}
elif TASK_BACKEND == "rq":
    INSTALLED_APPS += ["django_rq"]
    TASKS = {"default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": TASK_QUEUES}}
    RQ_QUEUES = {queue: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 3600} for queue in TASK_QUEUES}
else:
    TASKS = {
        "default": {
            "BACKEND": "django_tasks.backends.immediate.ImmediateBackend",
            "QUEUES": TASK_QUEUES,
        }
    }

# --- The embedded Audience API ----------------------------------------------------------------

# Requests per second allowed per project (a token bucket); unset means no limit. A project's
# own settings (manage.py api_keys set-rate-limit) take precedence.
AUDIENCE_API_RATE_LIMIT = env_float("AUDIENCE_API_RATE_LIMIT", None)
AUDIENCE_API_RATE_BURST = env_int("AUDIENCE_API_RATE_BURST", 0, minimum=0) or None
AUDIENCE_API_MAX_BODY_BYTES = env_int("AUDIENCE_API_MAX_BODY_BYTES", 16 * 1024 * 1024, minimum=1024)
AUDIENCE_API_MAINTENANCE = env_bool("AUDIENCE_API_MAINTENANCE", False)
# The two member-view extensions; off, the server answers them 404 NOT_FOUND as Batch would.
AUDIENCE_API_EXTENSIONS = env_bool("AUDIENCE_API_EXTENSIONS", True)
AUDIENCE_API_RETRY_AFTER = env_int("AUDIENCE_API_RETRY_AFTER", 5, minimum=1)
# Faults injected on purpose, for testing clients against a failing server (audiences/faults.py),
# e.g. "503:0.2,429:0.1,slow:0.05,drop:0.05,drop_after:0.05". Off when empty.
AUDIENCE_API_FAULTS = env_str("AUDIENCE_API_FAULTS")
AUDIENCE_API_FAULTS_SEED = env_int("AUDIENCE_API_FAULTS_SEED", 0) or None
AUDIENCE_API_FAULT_SLOW_SECONDS = env_float("AUDIENCE_API_FAULT_SLOW_SECONDS", 3.0)
# A worker's sweep re-enqueues operations still IN_PROGRESS after this many seconds (a worker
# that died, or an enqueue lost between commit and queue).
AUDIENCE_API_SWEEP_AFTER = env_int("AUDIENCE_API_SWEEP_AFTER", 30, minimum=1)

# --- The dashboard -------------------------------------------------------------------------

CONNECTION_ENCRYPTION_KEY = env_str("CONNECTION_ENCRYPTION_KEY")
# The embedded API's address as the worker and web server reach it (bin/start sets it).
EMBEDDED_API_URL = env_str("EMBEDDED_API_URL", "http://127.0.0.1:8000")
IMPORT_MAX_FILE_BYTES = env_int("IMPORT_MAX_FILE_BYTES", 500 * 1024 * 1024, minimum=1)
IMPORT_MAX_PASTE_BYTES = env_int("IMPORT_MAX_PASTE_BYTES", 10 * 1024 * 1024, minimum=1)
# Django's own cap on form bodies lets a paste well over its limit through, so that the page can
# say the paste is too large; past this cap Django refuses the request itself (templates/400.html).
DATA_UPLOAD_MAX_MEMORY_SIZE = max(
    4 * IMPORT_MAX_PASTE_BYTES, IMPORT_MAX_PASTE_BYTES + 16 * 1024 * 1024
)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
# A page's reads of a paced connection's API (list, view, member views) are kept this many
# seconds (0: never kept), so that pages don't spend the pace its imports' chunks need
# (dashboard/api_reads.py). Each process keeps its own: a write anywhere makes all of them ask
# again (the key carries the connection's last writes, read from the database).
API_READ_CACHE_SECONDS = env_int("API_READ_CACHE_SECONDS", 5, minimum=0)
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "dashboard",
        "OPTIONS": {"MAX_ENTRIES": 1000},
    }
}
# Public address of the dashboard, for the links in emails.
DASHBOARD_URL = env_str("DASHBOARD_URL", "http://127.0.0.1:8000")
# A chunk still "sending" this many seconds after its last sign of life was abandoned by a
# killed worker: it is sent again (same Idempotency-Key, so it can't apply twice).
IMPORT_SEND_LEASE = env_int("IMPORT_SEND_LEASE", 300, minimum=1)
# Likewise for a validation whose worker stopped renewing its lease: it starts over.
IMPORT_VALIDATION_LEASE = env_int("IMPORT_VALIDATION_LEASE", 60, minimum=1)
# How many workers may send one import's chunks at once (the connection's pace still holds).
IMPORT_SEND_WORKERS = env_int("IMPORT_SEND_WORKERS", 4, minimum=1)
# A file of at least IMPORT_VALIDATION_PARALLEL_BYTES is validated by this many processes
# (the worker reads and stores; they check the rows); 1 validates in the worker alone.
IMPORT_VALIDATION_PROCESSES = env_int(
    "IMPORT_VALIDATION_PROCESSES", min(2, os.cpu_count() or 1), minimum=1
)
IMPORT_VALIDATION_PARALLEL_BYTES = env_int(
    "IMPORT_VALIDATION_PARALLEL_BYTES", 4 * 1024 * 1024, minimum=0
)
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "audiences@localhost")
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(DATA_DIR / "uploads")))
# Each app's sweep, run by every worker: they finish what a killed worker left behind.
WORKER_SWEEPS = [
    "audiences.operations.sweep",
    "dashboard.tasks.sweep_validation",
    "dashboard.tasks.sweep_sending",
    "dashboard.audit.sweep",
    "dashboard.tasks.sweep",
    "dashboard.calls.sweep",  # the API calls counted in memory, and counts past a week
    "dashboard.management.commands.worker.sweep",  # the heartbeats of workers long dead
]
# The database queue's finished tasks older than this many hours are deleted by the workers'
# sweep (every ten minutes); 0 keeps them.
TASK_RESULTS_RETENTION_HOURS = env_int("TASK_RESULTS_RETENTION_HOURS", 24, minimum=0)
# Audit events older than this many days are purged by the workers; 0 keeps them forever.
AUDIT_RETENTION_DAYS = env_int("AUDIT_RETENTION_DAYS", 0, minimum=0)

# --- Auth, i18n, static ---------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("DJANGO_STATIC_ROOT", str(DATA_DIR / "staticfiles")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES: dict[str, dict[str, Any]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG and env_bool("DJANGO_MANIFEST_STATIC", False)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- Security: sign-in throttling, Content-Security-Policy, cookies ----------------------------
# (README, "Security and reliability"; each setting is proven by a test in tests/security/.)

# Sign-in throttling (django-axes): after SIGNIN_FAILURE_LIMIT failed sign-ins of one user name
# from one address, that pair is refused (429) for SIGNIN_LOCKOUT_MINUTES; a success resets it.
# Keyed on the pair, so that nobody can lock another person out from elsewhere.
INSTALLED_APPS += ["axes"]
MIDDLEWARE += ["axes.middleware.AxesMiddleware"]  # last, as django-axes asks
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("SIGNIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = env_int("SIGNIN_LOCKOUT_MINUTES", 15, minimum=1) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_DISABLE_ACCESS_LOG = True  # the audit trail records sign-ins already

# Content-Security-Policy (django-csp): scripts and styles from our own static files only, no
# inline script or style, nothing framed, forms posted only here. htmx is served by us and its
# inline indicator style is turned off (templates/base.html).
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
    "csp.middleware.CSPMiddleware",
)
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

# Cookies: never readable by scripts, never sent by other sites' forms; a session lasts a
# working day. DJANGO_HTTPS=true (production, served over HTTPS) also makes them Secure, sends
# HSTS and redirects plain HTTP to HTTPS (but /healthz, for load balancers).
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True  # htmx takes the token from the page (base.html), not the cookie
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env_int("DJANGO_SESSION_HOURS", 12, minimum=1) * 3600
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
HTTPS = env_bool("DJANGO_HTTPS", False)
if HTTPS:
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 365 * 24 * 3600, minimum=0)
    if env_bool("DJANGO_BEHIND_PROXY", False):
        # The proxy that ends TLS says so in X-Forwarded-Proto (and must drop the client's own).
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Production: shared uploads, HSTS for the whole domain --------------------------------------
# (README, "Deploying on PostgreSQL + Redis with several workers"; all off by default.) HTTPS,
# secure cookies and the proxy's header are the security settings' DJANGO_HTTPS and
# DJANGO_BEHIND_PROXY.

# HSTS (DJANGO_HTTPS sends it) for every subdomain too, and asking browsers to preload it:
# only the domain's owner can promise that, so both are theirs to turn on.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", False)

# Uploads must be readable by every worker on every machine: either MEDIA_ROOT on a filesystem
# they all mount (NFS, EFS...), or an S3-compatible bucket (django-storages; `bin/setup deploy`
# installs it). S3 credentials come from boto3's usual sources (AWS_ACCESS_KEY_ID and
# AWS_SECRET_ACCESS_KEY, or the machine's role).
DJANGO_STORAGE = env_choice("DJANGO_STORAGE", "filesystem", ("filesystem", "s3"))
if DJANGO_STORAGE == "s3":
    if not env_str("S3_BUCKET"):
        raise ImproperlyConfigured("DJANGO_STORAGE=s3 needs S3_BUCKET")
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env_str("S3_BUCKET"),
            "endpoint_url": env_str("S3_ENDPOINT_URL") or None,
            "region_name": env_str("S3_REGION") or None,
            "location": env_str("S3_PREFIX", "uploads"),
            "default_acl": None,  # the bucket's own (private) policy
            "file_overwrite": False,
            "querystring_auth": True,
        },
    }

# --- Reliability: bounds on what an upload may become ---------------------------------------
# A gzip upload may expand to at most this many bytes (and at most 100 times its size: a "zip
# bomb" is refused at upload, dashboard/csvfiles.py).
IMPORT_MAX_UNCOMPRESSED_BYTES = env_int(
    "IMPORT_MAX_UNCOMPRESSED_BYTES", 10 * IMPORT_MAX_FILE_BYTES, minimum=1
)
