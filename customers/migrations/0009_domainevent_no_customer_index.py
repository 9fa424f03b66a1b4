"""The outbox loses its index by customer: nothing reads a customer's events, and every outbox row paid for it.
Dropped concurrently: the outbox is written by every change."""

from django.contrib.postgres.operations import RemoveIndexConcurrently
from django.db import migrations


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("customers", "0008_order_customer_purchases_covering"),
    ]

    operations = [
        RemoveIndexConcurrently(model_name="domainevent", name="domainevent_customer"),
    ]
