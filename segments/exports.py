"""Exports of a segment's current members, limited to the customers the exporting user may see: CSV streamed in
keyset-paged chunks (constant memory at any size), or an Excel workbook written row by row (openpyxl's write-only
mode). Cells that a spreadsheet would run as a formula are written as text."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.http import HttpResponse, StreamingHttpResponse
from django.utils import timezone
from django.utils.translation import gettext as _
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from segments.models import Segment
from segments.selectors import current_memberships

CHUNK = 2000
# The most rows an Excel sheet holds (1,048,576) less the header.
logger = logging.getLogger(__name__)
XLSX_MAX_ROWS = 1_048_575
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def columns() -> list[str]:
    return [_("Customer ID"), _("Name"), _("Phone"), _("Email"), _("City"), _("Owner"), _("Entered at"),
            _("Entry reason")]  # fmt: skip


def _members(user, segment: Segment):
    return (
        current_memberships(user)
        .filter(segment=segment)
        .order_by("id")
        .values_list(
            "id", "customer_id", "customer__name", "customer__phone", "customer__email", "customer__city",
            "customer__owner__name", "entered_at", "entry_reason",
        )
    )  # fmt: skip


def member_count(user, segment: Segment) -> int:
    return _members(user, segment).count()


def member_rows(user, segment: Segment, *, chunk: int = CHUNK) -> Iterator[list[Any]]:
    """The visible current members as rows (see `columns`), in entry order, read `chunk` at a time by keyset on
    the membership id: no long-lived cursor, and no row twice or missed while members come and go."""
    after = 0
    while True:
        batch = list(_members(user, segment).filter(id__gt=after)[:chunk])
        for _id, customer_id, name, phone, email, city, owner, entered_at, reason in batch:
            yield [customer_id, name, phone, email, city, owner or "", _local(entered_at), reason]
        if len(batch) < chunk:
            return
        after = batch[-1][0]


def _local(moment: datetime) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S")


def _as_text(value: Any) -> Any:
    """Defuse spreadsheet formulas in CSV: a leading quote makes Excel and WPS read the cell as text."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class _Line:
    """A file-like sink for csv.writer that hands back each written line."""

    def write(self, value: str) -> str:
        return value


def csv_chunks(user, segment: Segment, *, chunk: int = CHUNK) -> Iterator[bytes]:
    """The CSV export as encoded pieces for a streaming response: a UTF-8 byte-order mark (so Excel reads
    Chinese names correctly), the header, then the rows. The header is worded now, in the request's language:
    the pieces are produced after the view has returned."""
    return _csv_pieces(columns(), user, segment, chunk=chunk)


def _csv_pieces(header: list[str], user, segment: Segment, *, chunk: int) -> Iterator[bytes]:
    writer = csv.writer(_Line())
    yield "\ufeff".encode() + writer.writerow(header).encode()
    lines: list[str] = []
    for row in member_rows(user, segment, chunk=chunk):
        lines.append(writer.writerow([_as_text(value) for value in row]))
        if len(lines) >= chunk:
            yield "".join(lines).encode()
            lines = []
    if lines:
        yield "".join(lines).encode()


def xlsx_bytes(user, segment: Segment) -> bytes:
    """The Excel export: one sheet with a frozen header row; strings are stored as text, never as formulas."""
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title=_("Members"))
    sheet.freeze_panes = "A2"
    sheet.append(columns())
    for row in member_rows(user, segment):
        sheet.append([_text_cell(sheet, value) for value in row])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def _text_cell(sheet, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    cell = WriteOnlyCell(sheet, value=ILLEGAL_CHARACTERS_RE.sub("", value))  # control characters break the file
    cell.data_type = "s"  # openpyxl stores a string starting with "=" as a formula otherwise
    return cell


def filename(segment: Segment, extension: str) -> str:
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    return f"segment-{segment.pk}-{stamp}.{extension}"


class TooManyRows(Exception):
    """More members than one Excel sheet holds."""


def download(user, segment: Segment, *, as_xlsx: bool) -> HttpResponse:
    """The export as a download: a streamed CSV, or a workbook (TooManyRows past one sheet). Logged."""
    if as_xlsx:
        if member_count(user, segment) > XLSX_MAX_ROWS:
            raise TooManyRows
        response: HttpResponse = HttpResponse(xlsx_bytes(user, segment), content_type=XLSX_TYPE)
        extension = "xlsx"
    else:
        response = StreamingHttpResponse(csv_chunks(user, segment), content_type="text/csv; charset=utf-8")
        extension = "csv"
    response["Content-Disposition"] = f'attachment; filename="{filename(segment, extension)}"'
    logger.info("segments.exported", extra={"segment": segment.pk, "user": user.pk, "format": extension})
    return response
