from __future__ import annotations

import json
import secrets
from io import StringIO
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from dashboard.models import UNPACED, Connection

EMBEDDED_PROJECT = "embedded"


class Command(BaseCommand):
    help = (
        "First start: create the embedded API project and its connection (keys also saved to "
        "DATA_DIR/embedded-api.json, readable by the owner only) and a first admin user. "
        "Does nothing that is already done."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--admin-username", default="admin")

    def handle(self, *args: Any, **options: Any) -> None:
        self._embedded_connection()
        self._first_admin(options["admin_username"])

    def _embedded_connection(self) -> None:
        keys_file = settings.DATA_DIR / "embedded-api.json"
        if not Connection.objects.filter(is_embedded=True).exists():
            out = StringIO()
            try:
                call_command("create_api_project", EMBEDDED_PROJECT, "--json", stdout=out)
            except CommandError:
                # The project exists but its connection is gone: give it a fresh key.
                call_command("api_keys", "rotate", EMBEDDED_PROJECT, "--json", stdout=out)
            keys = json.loads(out.getvalue())
            connection = Connection(
                name="Embedded API",
                base_url=settings.EMBEDDED_API_URL,
                project_key=keys["project_key"],
                is_embedded=True,
                # Our own server has no 1-call-per-second limit to respect (its own rate
                # limit, AUDIENCE_API_RATE_LIMIT, answers 429s that the client honours).
                calls_per_second=UNPACED,
            )
            connection.set_rest_key(keys["rest_key"])
            connection.save()
            keys_file.write_text(json.dumps(keys, indent=2))
            keys_file.chmod(0o600)
            self.stdout.write(
                f"Created the embedded API project and its connection; keys in {keys_file}:"
            )
            self.stdout.write(f"  X-Batch-Project: {keys['project_key']}")
            self.stdout.write(f"  Authorization:   Bearer {keys['rest_key']}")
        else:
            self.stdout.write(f"The embedded API's keys are in {keys_file}.")

    def _first_admin(self, username: str) -> None:
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write(
                "An admin user exists. Forgot the password? "
                "'.venv/bin/python manage.py changepassword <username>'."
            )
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        self.stdout.write(
            f"Created the first admin user. Sign in as '{username}' with the password "
            f"'{password}' (shown only now; change it with "
            f"'.venv/bin/python manage.py changepassword {username}')."
        )
