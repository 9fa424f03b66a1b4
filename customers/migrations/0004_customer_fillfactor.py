from django.db import migrations


class Migration(migrations.Migration):
    """Leave room in each page so frequent updates of unindexed columns (last seen) are HOT: no index writes."""

    dependencies = [("customers", "0003_order_time_index")]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE customers_customer SET (fillfactor = 85)",
            reverse_sql="ALTER TABLE customers_customer RESET (fillfactor)",
        ),
    ]
