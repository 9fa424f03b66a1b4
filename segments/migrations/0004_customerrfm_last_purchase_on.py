from django.db import migrations, models

# Rows are current as of the latest run's reference date (none: no rows were computed, nothing to convert).
FILL = """
UPDATE segments_customerrfm
SET last_purchase_on = (SELECT as_of FROM segments_rfmrun ORDER BY started_at DESC, id DESC LIMIT 1) - recency_days
WHERE recency_days IS NOT NULL
"""
UNFILL = """
UPDATE segments_customerrfm
SET recency_days = (SELECT as_of FROM segments_rfmrun ORDER BY started_at DESC, id DESC LIMIT 1) - last_purchase_on
WHERE last_purchase_on IS NOT NULL
"""


class Migration(migrations.Migration):
    """RFM recency stored as the last purchase date instead of days: a nightly recompute (the reference date moves
    by a day) then rewrites only the rows whose values, scores or class change, not every buyer's row. With few
    updates left, the half-empty pages kept for HOT updates (0003) only make the scans longer: default fillfactor."""

    dependencies = [("segments", "0003_customerrfm_fillfactor")]

    operations = [
        migrations.AddField(
            model_name="customerrfm",
            name="last_purchase_on",
            field=models.DateField(null=True, verbose_name="last purchase"),
        ),
        migrations.RunSQL(FILL, reverse_sql=UNFILL),
        migrations.RemoveField(model_name="customerrfm", name="recency_days"),
        migrations.RunSQL(
            "ALTER TABLE segments_customerrfm RESET (fillfactor)",
            reverse_sql="ALTER TABLE segments_customerrfm SET (fillfactor = 50)",
        ),
    ]
