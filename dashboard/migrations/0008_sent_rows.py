import django.db.models.deletion
from django.db import migrations, models


def copy_sent_rows(apps, schema_editor):
    # The rows noted as sent so far (they carried their chunk's number).
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO dashboard_sentrow (import_run_id, row_number, custom_id) "
            "SELECT import_run_id, row_number, custom_id FROM dashboard_importrow "
            "WHERE chunk_number IS NOT NULL ORDER BY custom_id"
        )


def copy_back(apps, schema_editor):
    # Each sent row gets the number of the chunk whose range holds it.
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "UPDATE dashboard_importrow SET chunk_number = ("
            " SELECT c.number FROM dashboard_chunk c"
            " WHERE c.import_run_id = dashboard_importrow.import_run_id"
            " AND dashboard_importrow.row_number BETWEEN c.first_row AND c.last_row)"
            " WHERE EXISTS (SELECT 1 FROM dashboard_sentrow s"
            " WHERE s.import_run_id = dashboard_importrow.import_run_id"
            " AND s.row_number = dashboard_importrow.row_number)"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0007_import_rows_one_index_less"),
    ]

    operations = [
        migrations.CreateModel(
            name="SentRow",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("row_number", models.IntegerField()),
                ("custom_id", models.TextField()),
                (
                    "import_run",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        to="dashboard.import",
                    ),
                ),
            ],
            options={
                "indexes": [models.Index(fields=["custom_id"], name="sent_row_id")],
            },
        ),
        migrations.RunPython(copy_sent_rows, copy_back),
        migrations.RemoveIndex(
            model_name="importrow",
            name="import_row_sent_id",
        ),
        migrations.RemoveField(
            model_name="importrow",
            name="chunk_number",
        ),
    ]
