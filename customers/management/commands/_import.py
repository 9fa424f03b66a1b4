"""Shared command-line handling for import_customers and import_orders."""

import json
from pathlib import Path

from django.core.management import BaseCommand, CommandError

from accounts.models import Role, User


class ImportCommand(BaseCommand):
    kind = ""

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path, help="A .csv (UTF-8 or GBK) or .xlsx file with a header row.")
        parser.add_argument(
            "--map", action="append", default=[], metavar="COLUMN=FIELD",
            help="Map a file column to a field, e.g. --map 手机号码=phone. Repeatable.",
        )  # fmt: skip
        parser.add_argument("--map-file", type=Path, help="A JSON object of column → field.")
        parser.add_argument("--dry-run", action="store_true", help="Validate and report; write nothing.")
        parser.add_argument("--report", type=Path, help="Write bad rows (line, column, reason) to this CSV.")
        parser.add_argument("--as-user", default="", help="Username the import acts as (default: an admin).")

    def run_import(self, path: Path, *, user, mapping: dict[str, str], dry_run: bool):
        raise NotImplementedError

    def handle(self, *args, path: Path, map: list[str], map_file: Path | None, dry_run: bool, report: Path | None,
               as_user: str, **options):  # fmt: skip
        if not path.exists():
            raise CommandError(f"No such file: {path}")
        mapping: dict[str, str] = {}
        if map_file:
            mapping.update(json.loads(map_file.read_text(encoding="utf-8")))
        for item in map:
            column, sep, target = item.partition("=")
            if not sep or not column or not target:
                raise CommandError(f"--map expects COLUMN=FIELD, got {item!r}")
            mapping[column.strip()] = target.strip()
        user = (
            User.objects.filter(username=as_user).first()
            if as_user
            else User.objects.filter(role=Role.ADMIN).order_by("pk").first()
        )
        if user is None:
            raise CommandError("No user to act as: create an admin or pass --as-user.")
        result = self.run_import(path, user=user, mapping=mapping, dry_run=dry_run)
        failed_lines = len({line for line, _column, _reason in result.errors})
        prefix = "DRY RUN (nothing written): " if dry_run else ""
        self.stdout.write(
            f"{prefix}{result.rows_read} lines read; {self.kind}: {result.created} created, {result.updated} updated,"
            f" {result.unchanged} unchanged; {failed_lines} lines with errors."
        )
        for line, column, reason in sorted(result.errors)[:20]:
            self.stdout.write(f"  line {line}, {column}: {reason}")
        if len(result.errors) > 20:
            self.stdout.write(f"  … and {len(result.errors) - 20} more")
        if report:
            result.write_errors(report)
            self.stdout.write(f"Error report: {report}")
