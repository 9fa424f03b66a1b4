from customers.management.commands._import import ImportCommand
from customers.services.imports import import_customers


class Command(ImportCommand):
    help = "Import customers from CSV or Excel; columns attr:<key> fill custom attributes, shop:<code> shop ids."
    kind = "customers"

    def run_import(self, path, *, user, mapping, dry_run):
        return import_customers(path, user=user, mapping=mapping, dry_run=dry_run)
