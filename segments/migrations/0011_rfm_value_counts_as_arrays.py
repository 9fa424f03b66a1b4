"""The RFM counts per value become one row per dimension (its values and their counts as arrays): a run rewrote
45,000 rows, now three. Derived data: the new table is filled from the stored rows, as 0009 filled the old one."""

import django.contrib.postgres.fields
from django.db import migrations, models

FILL = """
INSERT INTO segments_rfmvaluecount (dims, last_purchase_on, frequency, monetary, n)
SELECT dims, array_agg(last_purchase_on) FILTER (WHERE dims = 3),
       array_agg(frequency) FILTER (WHERE dims = 5),
       array_agg(monetary) FILTER (WHERE dims = 6),
       array_agg(n)
FROM (
    SELECT GROUPING(last_purchase_on, frequency, monetary) AS dims, last_purchase_on, frequency, monetary,
           count(*)::integer AS n
    FROM segments_customerrfm WHERE frequency > 0
    GROUP BY GROUPING SETS ((last_purchase_on), (frequency), (monetary))
) AS counted
GROUP BY dims
"""


class Migration(migrations.Migration):
    dependencies = [
        ("segments", "0010_rfmtransition_no_run_index"),
    ]

    operations = [
        migrations.DeleteModel(name="RfmValueCount"),
        migrations.CreateModel(
            name="RfmValueCount",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("dims", models.PositiveSmallIntegerField(unique=True)),
                (
                    "last_purchase_on",
                    django.contrib.postgres.fields.ArrayField(base_field=models.DateField(), null=True, size=None),
                ),
                (
                    "frequency",
                    django.contrib.postgres.fields.ArrayField(base_field=models.IntegerField(), null=True, size=None),
                ),
                (
                    "monetary",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=models.DecimalField(decimal_places=2, max_digits=14), null=True, size=None
                    ),
                ),
                ("n", django.contrib.postgres.fields.ArrayField(base_field=models.IntegerField(), size=None)),
            ],
            options={
                "verbose_name": "RFM value count",
                "verbose_name_plural": "RFM value counts",
            },
        ),
        migrations.RunSQL(FILL, reverse_sql=migrations.RunSQL.noop),
    ]
