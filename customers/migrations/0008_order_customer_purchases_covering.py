"""The orders' per-customer index carries status and amounts (index-only reads of a customer's purchases). Built
and dropped concurrently: orders keep being written while a large table's index builds."""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("customers", "0007_order_partial_fk_indexes"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="order",
            index=models.Index(
                fields=["customer", "ordered_at"],
                include=["status", "amount", "refunded_amount"],
                name="order_customer_purchases",
            ),
        ),
        RemoveIndexConcurrently(model_name="order", name="order_customer_time"),
    ]
