"""What the app's database sessions set when they open.

Full-page images are compressed in the write-ahead log (`wal_compression`, lz4 where the server has it): the first
change to a page after a checkpoint logs the whole page, and a night's layering runs touch pages all over their
tables, so those images were most of their WAL (170 of 195 MB in a weekly RFM run at a million customers). Only
for a role that may set it (a superuser, or one granted `SET ON PARAMETER wal_compression`, PostgreSQL 15+), and
only where the server does not compress already; `DB_COMPRESS_WAL=0` leaves it alone.
"""

from typing import Any

from django.conf import settings

COMPRESS_WAL_SQL = """
SELECT set_config('wal_compression', CASE WHEN 'lz4' = ANY(enumvals) THEN 'lz4' ELSE 'pglz' END, false)
FROM pg_settings
WHERE name = 'wal_compression' AND setting = 'off' AND has_parameter_privilege('wal_compression', 'SET')
"""


def compress_wal(sender: Any, connection: Any, **kwargs: Any) -> None:
    """connection_created receiver: compress the session's full-page images when the role may."""
    if connection.vendor != "postgresql" or connection.pg_version < 150000 or not settings.DB_COMPRESS_WAL:
        return
    with connection.cursor() as cursor:
        cursor.execute(COMPRESS_WAL_SQL)
