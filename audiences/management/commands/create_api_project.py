from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from audiences.models import Project


class Command(BaseCommand):
    help = "Create an Audience API project and its first REST API key (shown once, stored hashed)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="A unique name for the project")
        parser.add_argument("--json", action="store_true", help="Print the keys as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["name"].strip()
        if not name:
            raise CommandError("The project name must not be empty")
        if Project.objects.filter(name=name).exists():
            raise CommandError(
                f"A project named {name!r} exists already; use 'manage.py api_keys create {name}' "
                "for a new key"
            )
        with transaction.atomic():
            project = Project.objects.create(name=name)
            rest_key = project.new_api_key()
        if options["json"]:
            self.stdout.write(
                json.dumps({"project_key": project.project_key, "rest_key": rest_key})
            )
        else:
            self.stdout.write(f"Project:     {project.name}")
            self.stdout.write(f"Project key: {project.project_key}")
            self.stdout.write(f"REST key:    {rest_key}   (shown only now; it is stored hashed)")
