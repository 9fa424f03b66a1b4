"""Used by `make run`: demo data when the database is empty, and the demo logins, printed."""

from django.core.management import BaseCommand, call_command
from django.db import transaction

from accounts.models import Role, User
from customers.demo import DEMO_STEPS
from customers.models import Customer, Staff

DEMO_PASSWORD = "scrm-demo-2026"  # noqa: S105 - a local demo login, printed on purpose
DEMO_USERS = [
    ("admin", Role.ADMIN, "管理员"),
    ("operator", Role.OPERATOR, "运营小王"),
    ("rep", Role.SALES, None),
]


class Command(BaseCommand):
    help = "Seed demo data when the database has no customers, create demo logins and print them."

    def add_arguments(self, parser):
        parser.add_argument("--customers", type=int, default=10_000)
        parser.add_argument("--seed", type=int, default=42)

    def handle(self, *args, customers: int, seed: int, **options):
        if not Customer.objects.exists():
            self.stdout.write(f"Empty database: seeding {customers:,} demo customers…")
            call_command("seed_demo", customers=customers, seed=seed, stdout=self.stdout)
            for name, step in DEMO_STEPS.items():
                self.stdout.write(f"  {name}: {step()}")
        with transaction.atomic():
            for username, role, first_name in DEMO_USERS:
                user, created = User.objects.get_or_create(
                    username=username,
                    defaults={"role": role, "first_name": first_name or "", "is_staff": role == Role.ADMIN,
                              "is_superuser": role == Role.ADMIN},
                )  # fmt: skip
                if created:
                    user.set_password(DEMO_PASSWORD)
                    user.save()
                if role == Role.SALES and not hasattr(user, "staff"):
                    staff = Staff.objects.filter(user__isnull=True).order_by("pk").first()
                    if staff:
                        staff.user = user
                        staff.save(update_fields=["user"])
        rep_staff = Staff.objects.filter(user__username="rep").first()
        book = rep_staff.owned_customers.count() if rep_staff else 0
        self.stdout.write(self.style.SUCCESS(f"\nDemo logins (password for each: {DEMO_PASSWORD})"))
        self.stdout.write("  admin     administrator, also /admin/")
        self.stdout.write("  operator  operator: sees every customer")
        self.stdout.write(
            f"  rep       sales rep {rep_staff.name if rep_staff else ''}: sees only their {book:,} customers"
        )
