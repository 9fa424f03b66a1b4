from django.apps import AppConfig
from django.db.backends.signals import connection_created


class ScrmConfig(AppConfig):
    name = "scrm"
    verbose_name = "SCRM"

    def ready(self) -> None:
        from scrm.db import compress_wal

        connection_created.connect(compress_wal, dispatch_uid="scrm.db.compress_wal")
