import json

from django.db import migrations

import audiences.models


def to_json(apps, schema_editor):
    # Rows written before this migration hold the plain string.
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT id, display_name FROM audiences_audience")
        rows = cursor.fetchall()
        for pk, value in rows:
            cursor.execute(
                "UPDATE audiences_audience SET display_name = %s WHERE id = %s",
                [json.dumps(value), pk],
            )


def to_plain(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT id, display_name FROM audiences_audience")
        for pk, value in cursor.fetchall():
            cursor.execute(
                "UPDATE audiences_audience SET display_name = %s WHERE id = %s",
                [json.loads(value)[:255], pk],
            )


class Migration(migrations.Migration):
    dependencies = [("audiences", "0001_initial")]

    operations = [
        migrations.AlterField(
            model_name="audience",
            name="display_name",
            field=audiences.models.ExactTextField(),
        ),
        migrations.RunPython(to_json, to_plain),
    ]
