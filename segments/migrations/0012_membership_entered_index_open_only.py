"""The memberships' index by entry date covers current members only (what `since` reads): exits stop writing
into it. Built and dropped concurrently: memberships keep being written meanwhile."""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("segments", "0011_rfm_value_counts_as_arrays"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="segmentmembership",
            index=models.Index(
                condition=models.Q(exited_at__isnull=True),
                fields=["segment", "entered_at"],
                name="segmentmembership_entered_open",
            ),
        ),
        RemoveIndexConcurrently(model_name="segmentmembership", name="segmentmembership_entered"),
    ]
