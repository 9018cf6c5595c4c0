from __future__ import annotations

import json
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from audiences.models import Project

EMBEDDED = "embedded"


class Command(BaseCommand):
    help = (
        "First start: create the embedded API project (keys saved to DATA_DIR/embedded-api.json, "
        "readable by the owner only) and a first admin user. Does nothing that is already done."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--admin-username", default="admin")

    def handle(self, *args: Any, **options: Any) -> None:
        keys_file = settings.DATA_DIR / "embedded-api.json"
        with transaction.atomic():
            project = Project.objects.filter(name=EMBEDDED).first()
            if project is None or not keys_file.exists():
                project = project or Project.objects.create(name=EMBEDDED)
                rest_key = project.new_api_key()
                keys_file.write_text(
                    json.dumps({"project_key": project.project_key, "rest_key": rest_key}, indent=2)
                )
                keys_file.chmod(0o600)
                self.stdout.write(f"Created the embedded API project; its keys are in {keys_file}")
        keys = json.loads(keys_file.read_text())
        self.stdout.write(f"  X-Batch-Project: {keys['project_key']}")
        self.stdout.write(f"  Authorization:   Bearer {keys['rest_key']}")

        User = get_user_model()
        username = options["admin_username"]
        if not User.objects.filter(is_superuser=True).exists():
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser(username=username, email="", password=password)
            self.stdout.write(
                f"Created the first admin user. Sign in as '{username}' with the password "
                f"'{password}' (shown only now; change it with "
                f"'python manage.py changepassword {username}')."
            )
        else:
            self.stdout.write(
                "An admin user exists. Forgot the password? "
                "'python manage.py changepassword <username>'."
            )
