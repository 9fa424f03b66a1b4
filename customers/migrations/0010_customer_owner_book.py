"""A rep's book index carries `merged_into`, so the visibility rule (owner, not merged) reads a rep's customers
from the index alone. Built before the old index is dropped, both concurrently: customers keep being written."""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("customers", "0009_domainevent_no_customer_index"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="customer",
            index=models.Index(fields=["owner", "-id"], include=["merged_into"], name="customer_owner_book"),
        ),
        RemoveIndexConcurrently(model_name="customer", name="customer_owner_id"),
    ]
