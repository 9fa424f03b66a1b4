from customers.management.commands._import import ImportCommand
from customers.services.imports import import_orders


class Command(ImportCommand):
    help = "Import orders from CSV or Excel; lines sharing source and external_id form one order."
    kind = "orders"

    def run_import(self, path, *, user, mapping, dry_run):
        return import_orders(path, user=user, mapping=mapping, dry_run=dry_run)
