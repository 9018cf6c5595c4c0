from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from audiences.models import ApiKey, Project


class Command(BaseCommand):
    help = (
        "Manage a project's REST API keys: list them, create one, rotate (create one and revoke "
        "all others) or revoke one by its prefix."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["list", "create", "rotate", "revoke"])
        parser.add_argument("project", help="The project's name or project key")
        parser.add_argument("prefix", nargs="?", help="With revoke: the key's prefix (from list)")
        parser.add_argument("--json", action="store_true", help="Print JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        project = self._project(options["project"])
        action = options["action"]
        if action == "list":
            keys = [
                {
                    "prefix": k.prefix,
                    "created": k.created.isoformat(),
                    "revoked": k.revoked_at.isoformat() if k.revoked_at else None,
                }
                for k in project.api_keys.order_by("created")
            ]
            if options["json"]:
                self.stdout.write(json.dumps(keys))
            for k in [] if options["json"] else keys:
                state = f"revoked {k['revoked']}" if k["revoked"] else "active"
                self.stdout.write(f"{k['prefix']}…  created {k['created']}  {state}")
            return
        if action == "revoke":
            prefix = options["prefix"]
            if not prefix:
                raise CommandError("Give the prefix of the key to revoke (see 'api_keys list')")
            matches = ApiKey.objects.filter(project=project, prefix=prefix, revoked_at__isnull=True)
            if matches.count() != 1:
                raise CommandError(
                    f"No single active key of {project.name!r} has the prefix {prefix!r}"
                )
            matches.update(revoked_at=timezone.now())
            self.stdout.write(f"Revoked {prefix}…")
            return
        with transaction.atomic():
            if action == "rotate":
                project.api_keys.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
            rest_key = project.new_api_key()
        if options["json"]:
            self.stdout.write(
                json.dumps({"project_key": project.project_key, "rest_key": rest_key})
            )
        else:
            self.stdout.write(f"REST key: {rest_key}   (shown only now; it is stored hashed)")
            if action == "rotate":
                self.stdout.write("Every other key of this project is revoked.")

    def _project(self, name_or_key: str) -> Project:
        project = (
            Project.objects.filter(name=name_or_key).first()
            or Project.objects.filter(project_key=name_or_key).first()
        )
        if project is None:
            raise CommandError(f"No project named or keyed {name_or_key!r}")
        return project
