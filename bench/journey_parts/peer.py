"""The peer: django-import-export importing a file into a member model, its usual flow.

`python -m journey_parts.peer --csv F --width N --database DB` (bench/ on the path) prints one
JSON line. The flow is the admin's: the file is read into a tablib Dataset, a dry run
(`import_data(dry_run=True)`) reports what would happen, then the file is read again and imported
for real (`dry_run=False`). Rows whose values don't convert are reported invalid and skipped, the
others go in; a repeated ID updates the row found by `import_id_fields`. The time runs from
reading the file for the dry run to the end of the real import; no table is created in it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--csv", required=True)
    parser.add_argument("--width", type=int, required=True)
    parser.add_argument("--database", required=True)
    args = parser.parse_args()
    os.environ["DJANGO_SETTINGS_MODULE"] = "journey_parts.peer_settings"
    os.environ["PEER_DATABASE"] = args.database
    import django

    # "ignoring field 'id' because not declared in 'fields' whitelist": as meant.
    warnings.filterwarnings("ignore", message=".*not declared in 'fields' whitelist")
    django.setup()
    import tablib
    from django.core.management import call_command

    from journey_parts import proc
    from journey_parts.peer_app.models import MODELS
    from journey_parts.peer_app.resources import resource_class

    call_command("migrate", run_syncdb=True, verbosity=0)
    Resource = resource_class(args.width)

    def dataset() -> tablib.Dataset:
        with open(args.csv, encoding="utf-8", newline="") as f:
            return tablib.Dataset().load(f.read(), format="csv")

    started = time.perf_counter()
    dry = Resource().import_data(dataset(), dry_run=True)
    dry_done = time.perf_counter()
    result = Resource().import_data(dataset(), dry_run=False)
    finished = time.perf_counter()
    totals = result.totals
    print(
        json.dumps(
            {
                "seconds": finished - started,
                "dry_run_seconds": dry_done - started,
                "import_seconds": finished - dry_done,
                "peak_mb": proc.own_peak_mb(),
                "dry_run_invalid": len(dry.invalid_rows),
                "errors": len(result.row_errors()),
                "invalid": len(result.invalid_rows),
                "new": totals.get("new", 0),
                "update": totals.get("update", 0),
                "members": MODELS[args.width].objects.count(),
            }
        )
    )


if __name__ == "__main__":
    main()
