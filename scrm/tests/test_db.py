import os

import pytest
from django.db import connections


def _fresh(**settings_dict):
    connection = connections.create_connection("default")
    connection.settings_dict = {**connection.settings_dict, **settings_dict}
    connection.ensure_connection()
    return connection


def _wal_compression(connection) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW wal_compression")
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_a_new_session_compresses_its_full_page_images_when_its_role_may(settings):
    admin = _fresh()
    role = f"scrm_plain_{os.getpid()}"
    try:
        with admin.cursor() as cursor:
            cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            if not cursor.fetchone()[0]:
                pytest.skip("the test database's role is not a superuser")
            cursor.execute(f"CREATE ROLE {role} LOGIN")
        plain = _fresh(USER=role, PASSWORD="")
        settings.DB_COMPRESS_WAL = False
        left_alone = _fresh()

        assert _wal_compression(admin) in {"lz4", "pglz"}
        assert _wal_compression(plain) == "off"  # no privilege: no error either
        assert _wal_compression(left_alone) == "off"
        plain.close()
        left_alone.close()
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP ROLE IF EXISTS {role}")
        admin.close()
