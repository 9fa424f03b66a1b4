from django.core.management import BaseCommand, CommandError

from customers.demo import seed_demo
from customers.models import Customer


class Command(BaseCommand):
    help = "Generate deterministic demo customers, orders, events and groups (set-based; 1M customers in minutes)."

    def add_arguments(self, parser):
        parser.add_argument("--customers", type=int, default=10_000)
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--force", action="store_true", help="Replace existing customer data.")

    def handle(self, *args, customers: int, seed: int, force: bool, **options):
        if customers < 1:
            raise CommandError("--customers must be at least 1")
        if Customer.objects.exists() and not force:
            raise CommandError("The database already has customers; pass --force to replace them with demo data.")
        self.stdout.write(f"Seeding {customers:,} customers (seed {seed})…")
        counts = seed_demo(customers=customers, seed=seed, progress=self.stdout.write)
        self.stdout.write(self.style.SUCCESS(", ".join(f"{name}: {n:,}" for name, n in counts.items())))
