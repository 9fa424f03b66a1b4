"""Importing customers and orders from CSV or Excel files through the same bulk services as the API.

Good rows land, bad rows are reported by file line and column; a row is never half-written. Orders may
span several lines (one per order line) sharing source and external_id.
"""

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import transaction

from customers.services.ingest import BulkResult, bulk_upsert_customers, bulk_upsert_orders

CHUNK_ROWS = 5_000

# Headers understood without a mapping (zh-hans exports from shops and spreadsheets).
HEADER_ALIASES = {
    "姓名": "name", "性别": "gender", "生日": "birthday", "城市": "city", "职业": "occupation",
    "手机": "phone", "手机号": "phone", "邮箱": "email", "订单号": "external_id", "来源": "source",
    "下单时间": "ordered_at", "金额": "amount", "订单金额": "amount", "退款金额": "refunded_amount",
    "状态": "status", "商品编码": "sku", "商品名称": "line_name", "数量": "quantity", "单价": "unit_price",
}  # fmt: skip
GENDER_VALUES = {"男": "male", "女": "female", "未知": "unknown", "m": "male", "f": "female"}
CUSTOMER_IDENTITY_FIELDS = ("id", "wecom", "unionid", "phone", "email", "shop_id")
LINE_FIELDS = {"sku": "sku", "line_name": "name", "quantity": "quantity", "unit_price": "unit_price",
               "line_amount": "amount"}  # fmt: skip


@dataclass
class ImportReport:
    rows_read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[tuple[int, str, str]] = field(default_factory=list)  # (line, column, reason)
    dry_run: bool = False

    def add(self, result: BulkResult) -> None:
        self.created += result.created
        self.updated += result.updated
        self.unchanged += result.unchanged

    def write_errors(self, path: Path) -> None:
        with path.open("w", newline="", encoding="utf-8-sig") as out:
            writer = csv.writer(out)
            writer.writerow(["line", "column", "reason"])
            writer.writerows(sorted(self.errors))


def read_table(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (file line number, row by header) from a .csv (UTF-8 or GBK) or .xlsx file."""
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        from openpyxl import load_workbook

        book = load_workbook(path, read_only=True, data_only=True)
        rows = book.active.iter_rows(values_only=True)
        header = [str(h).strip() if h is not None else "" for h in next(rows, [])]
        for line, values in enumerate(rows, start=2):
            if values and any(v not in (None, "") for v in values):
                yield line, dict(zip(header, values, strict=False))
        book.close()
        return
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("gb18030")
    reader = csv.DictReader(io.StringIO(text))
    reader.fieldnames = [h.strip() for h in reader.fieldnames or []]
    for row in reader:
        if any(v not in (None, "") for v in row.values()):
            yield reader.line_num, row


def _mapped(row: dict[str, Any], mapping: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Rename columns to fields; returns the values and field → source column (for error reports)."""
    values, columns = {}, {}
    for column, value in row.items():
        target = mapping.get(column) or HEADER_ALIASES.get(column) or column
        if isinstance(value, str):
            value = value.strip()
        if value in (None, ""):
            continue
        values[target] = value
        columns[target] = column
    if "gender" in values:
        values["gender"] = GENDER_VALUES.get(str(values["gender"]).lower(), values["gender"])
    return values, columns


def _customer_row(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    row: dict[str, Any] = {}
    renames: dict[str, str] = {}
    attributes: dict[str, Any] = {}
    shops: dict[str, Any] = {}
    for name, value in values.items():
        if name.startswith("attr:"):
            attributes[name[5:]] = value
            renames[f"attributes.{name[5:]}"] = name
        elif name.startswith("shop:"):
            shops[name[5:]] = str(value)
            renames[f"shop.{name[5:]}"] = name
        else:
            row[name] = value
    if attributes:
        row["attributes"] = attributes
    if shops:
        row["shop"] = shops
    return row, renames


def import_customers(path: Path, *, user, mapping: dict[str, str], dry_run: bool = False) -> ImportReport:
    """Import a customers file: one row per customer; `attr:<key>` and `shop:<code>` columns are understood."""
    report = ImportReport(dry_run=dry_run)
    batch: list[tuple[int, dict, dict]] = []

    def flush() -> None:
        rows = [row for _line, row, _cols in batch]
        result = _run(bulk_upsert_customers, rows, user=user, dry_run=dry_run)
        report.add(result)
        for error in result.errors:
            line, _row, columns = batch[error.index]
            report.errors.append((line, columns.get(error.field, error.field), error.message))
        batch.clear()

    for line, raw in read_table(path):
        report.rows_read += 1
        values, columns = _mapped(raw, mapping)
        row, renames = _customer_row(values)
        batch.append((line, row, {**columns, **renames}))
        if len(batch) >= CHUNK_ROWS:
            flush()
    if batch:
        flush()
    return report


def import_orders(path: Path, *, user, mapping: dict[str, str], dry_run: bool = False) -> ImportReport:
    """Import an orders file: lines sharing (source, external_id) are one order with several lines.

    Customer columns: id/customer_id, wecom, unionid, phone, email, shop_id. Line columns: sku, line_name,
    quantity, unit_price, line_amount.
    """
    report = ImportReport(dry_run=dry_run)
    orders: dict[tuple[str, str], dict[str, Any]] = {}

    def flush() -> None:
        items = list(orders.values())
        result = _run(bulk_upsert_orders, [item["row"] for item in items], user=user, dry_run=dry_run)
        report.add(result)
        for error in result.errors:
            item = items[error.index]
            line, column = item["lines"][0], item["columns"].get(error.field, error.field)
            if error.field.startswith("lines["):
                position = int(error.field[6 : error.field.index("]")])
                line = item["lines"][position]
                column = item["columns"].get(error.field.split(".", 1)[1], error.field)
            report.errors.append((line, column, error.message))
        orders.clear()

    for line, raw in read_table(path):
        report.rows_read += 1
        values, columns = _mapped(raw, mapping)
        if "customer_id" in values:
            values["id"] = values.pop("customer_id")
            columns["id"] = columns.pop("customer_id")
        key = (str(values.get("source", "")), str(values.get("external_id", "")))
        if not all(key):
            key = ("", f"line-{line}")  # reported as a missing field by the service
        item = orders.get(key)
        if item is None:
            if len(orders) >= CHUNK_ROWS:
                flush()
            row = {k: v for k, v in values.items() if k not in LINE_FIELDS and k not in CUSTOMER_IDENTITY_FIELDS}
            row["customer"] = {k: values[k] for k in CUSTOMER_IDENTITY_FIELDS if k in values}
            row["lines"] = []
            columns.update({f"customer.{k}": columns[k] for k in CUSTOMER_IDENTITY_FIELDS if k in columns})
            columns["customer"] = ", ".join(columns[k] for k in CUSTOMER_IDENTITY_FIELDS if k in columns) or "customer"
            item = orders[key] = {"row": row, "lines": [], "columns": columns}
        line_values = {LINE_FIELDS[k]: values[k] for k in LINE_FIELDS if k in values}
        if line_values:
            item["row"]["lines"].append(line_values)
            item["columns"].update({LINE_FIELDS[k]: columns[k] for k in LINE_FIELDS if k in columns})
        item["lines"].append(line)
    if orders:
        flush()
    return report


class _DryRun(Exception):
    pass


def _run(service, rows: list[dict], *, user, dry_run: bool) -> BulkResult:
    if not dry_run:
        return service(rows, user=user)
    result = BulkResult()
    try:
        with transaction.atomic():
            result = service(rows, user=user)
            raise _DryRun
    except _DryRun:
        pass
    return result
