import csv
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command
from openpyxl import Workbook

from accounts.models import Role
from customers.models import Customer, Order
from customers.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def admin_user():
    return UserFactory(username="admin", role=Role.ADMIN)


def write_csv(path: Path, header: list[str], rows: list[list[str]], encoding: str = "utf-8") -> Path:
    with path.open("w", newline="", encoding=encoding) as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_report(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8-sig") as f:
        return list(csv.reader(f))[1:]


def test_customer_import_lands_good_rows_and_reports_bad_ones_by_line_and_column(tmp_path, capsys):
    source = write_csv(
        tmp_path / "customers.csv",
        ["姓名", "手机号码", "性别", "生日", "attr:skin_type", "shop:youzan"],
        [
            ["王芳", "13800000001", "女", "1990-05-01", "油性", "Y1"],
            ["李娜", "13800000002", "外星", "1991-01-01", "", ""],
            ["", "", "", "", "干性", ""],
            ["赵敏", "13800000004", "女", "not a date", "", ""],
            ["孙丽", "13800000005", "女", "", "混合", "Y5"],
        ],
    )
    report = tmp_path / "errors.csv"

    call_command("import_customers", str(source), "--map", "手机号码=phone", "--report", str(report))

    assert sorted(Customer.objects.values_list("name", flat=True)) == ["孙丽", "王芳"]
    wang = Customer.objects.get(name="王芳")
    assert (wang.gender, str(wang.birthday), wang.attributes) == ("female", "1990-05-01", {"skin_type": "油性"})
    assert set(wang.identities.values_list("kind", "namespace", "value")) == {
        ("phone", "", "13800000001"),
        ("shop", "youzan", "Y1"),
    }
    assert read_report(report) == [
        ["3", "性别", "Must be one of: female, male, unknown."],
        ["4", "id", "Give the customer's id or at least one identity (wecom, unionid, phone, email, shop)."],
        ["5", "生日", "Expected a date like 1990-05-01, got 'not a date'."],
    ]
    assert "5 lines read; customers: 2 created" in capsys.readouterr().out


def test_dry_run_writes_nothing_but_reports_everything(tmp_path, capsys):
    source = write_csv(tmp_path / "c.csv", ["name", "phone"], [["甲", "13900000001"], ["乙", ""]])

    call_command("import_customers", str(source), "--dry-run")

    assert not Customer.objects.exists()
    out = capsys.readouterr().out
    assert "DRY RUN" in out
    assert "1 created" in out
    assert "line 3, id" in out


def test_gbk_encoded_csv_is_read(tmp_path):
    source = write_csv(tmp_path / "gbk.csv", ["姓名", "手机"], [["周杰", "13700000000"]], encoding="gbk")

    call_command("import_customers", str(source))

    assert Customer.objects.get().name == "周杰"


def test_order_import_groups_lines_and_reports_the_bad_line(tmp_path):
    header = ["source", "订单号", "下单时间", "phone", "sku", "数量", "单价"]
    source = write_csv(
        tmp_path / "orders.csv",
        header,
        [
            ["youzan", "A1", "2026-10-01 10:00", "13800000001", "MASK", "2", "50"],
            ["youzan", "A1", "2026-10-01 10:00", "13800000001", "SERUM", "1", "300"],
            ["youzan", "A2", "2026-10-02 10:00", "13800000002", "MASK", "zero", "50"],
            ["youzan", "A3", "2026-10-03", "", "MASK", "1", "50"],
            ["youzan", "A4", "2026-10-04 09:30", "13800000001", "MASK", "1", "50"],
        ],
    )
    report = tmp_path / "errors.csv"

    call_command("import_orders", str(source), "--report", str(report))

    a1 = Order.objects.get(external_id="A1")
    assert a1.amount == Decimal("400.00")
    assert a1.lines.count() == 2
    assert sorted(Order.objects.values_list("external_id", flat=True)) == ["A1", "A4"]
    assert read_report(report) == [
        ["4", "数量", "Expected a whole number, got 'zero'."],
        ["5", "customer", "Give the customer's id or at least one identity (wecom, unionid, phone, email, shop_id)."],
    ]
    # Importing the same file again changes nothing.
    call_command("import_orders", str(source))
    assert Order.objects.count() == 2


def test_order_import_from_excel(tmp_path):
    book = Workbook()
    sheet = book.active
    sheet.append(["source", "external_id", "ordered_at", "unionid", "amount"])
    sheet.append(["pos", "P1", "2026-09-09 12:00:00", "U1", 88.8])
    path = tmp_path / "orders.xlsx"
    book.save(path)

    call_command("import_orders", str(path))

    order = Order.objects.get()
    assert (order.source, order.amount, order.customer.identities.get().value) == ("pos", Decimal("88.80"), "U1")
