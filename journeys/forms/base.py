"""The base of the builder's forms: repeated rows, fields shown for some values of another, and the definition's
issues next to the field they concern."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from django import forms

ROW_ISSUE = re.compile(r"^(?P<key>\w+)\[(?P<index>\d+)\]\.?(?P<rest>.*)$")


class BuilderForm(forms.Form):
    """What the builder's forms share: rows of repeated fields (branches, arms, plan days), fields shown only for
    some values of another one (`shown_when`: field → (controlling field, values); static/scrm/journey-graph.js
    hides the others), and the definition's issues put next to the field they concern (`add_issues`)."""

    shown_when: ClassVar[dict[str, tuple[str, tuple[str, ...]]]] = {}
    # Repeated rows: the row's name and its fields; a row left blank is ignored.
    row_name: ClassVar[str] = ""
    row_title: ClassVar[Any] = ""
    row_key: ClassVar[str] = ""  # the definition's list the rows make ("branches", "arms", "plan")
    extra_rows: ClassVar[int] = 1
    min_rows: ClassVar[int] = 0

    def __init__(self, data: Any = None, *, rows: list[dict[str, Any]] | None = None, **kwargs: Any) -> None:
        super().__init__(data, **kwargs)
        self.row_count = 0
        self.kept_rows: list[int] = []  # the definition's row index → the form's row index
        if self.row_name:
            self._add_rows(rows or [])

    def row_fields(self) -> dict[str, forms.Field]:
        return {}

    def _add_rows(self, rows: list[dict[str, Any]]) -> None:
        if self.is_bound:
            indexes = {int(m.group(1)) for key in self.data if (m := re.match(rf"^{self.row_name}_(\d+)_", key))}
            count = max(indexes) + 1 if indexes else 0
        else:
            count = len(rows) + self.extra_rows
        self.row_count = max(count, self.min_rows)
        for index in range(self.row_count):
            values = rows[index] if index < len(rows) else {}
            for key, field in self.row_fields().items():
                name = f"{self.row_name}_{index}_{key}"
                self.fields[name] = field
                if key in values:
                    self.initial[name] = values[key]

    def row_values(self) -> list[dict[str, Any]]:
        """The cleaned rows that are not blank, in order (and which form row each came from)."""
        found, self.kept_rows = [], []
        for index in range(self.row_count):
            values = {key: self.cleaned_data.get(f"{self.row_name}_{index}_{key}") for key in self.row_fields()}
            if not self.is_blank_row(values):
                found.append(values)
                self.kept_rows.append(index)
        return found

    def is_blank_row(self, values: Mapping[str, Any]) -> bool:
        return all(value in (None, "", [], {}) for key, value in values.items() if key != "next")

    # What the template draws.

    def layout(self) -> list[dict[str, Any]]:
        """The fields outside rows (but those drawn after them), each with the condition under which it shows."""
        after = set(self.after_rows())
        return [self._cell(name) for name in self.fields if not self._is_row_field(name) and name not in after]

    def layout_after_rows(self) -> list[dict[str, Any]]:
        return [self._cell(name) for name in self.after_rows() if name in self.fields]

    def after_rows(self) -> list[str]:
        return []

    def rows(self) -> list[list[dict[str, Any]]]:
        keys = list(self.row_fields())
        return [[self._cell(f"{self.row_name}_{i}_{key}", key) for key in keys] for i in range(self.row_count)]

    def row_headers(self) -> list[Any]:
        return [field.label for field in self.row_fields().values()]

    def _is_row_field(self, name: str) -> bool:
        return bool(self.row_name) and name.startswith(f"{self.row_name}_")

    def _cell(self, name: str, key: str | None = None) -> dict[str, Any]:
        controller, values = self.shown_when.get(f"{self.row_name}.{key}" if key else name, ("", ()))
        return {"field": self[name], "when": controller, "values": " ".join(values)}

    def rows_when(self) -> dict[str, str]:
        controller, values = self.shown_when.get(self.row_name, ("", ()))
        return {"when": controller, "values": " ".join(values)}

    # The definition's issues, next to their fields.

    def add_issues(self, issues: Iterable[tuple[str, str]], prefix: str) -> None:
        for path, message in issues:
            field = self.field_for(path.removeprefix(prefix).lstrip("."))
            self.add_error(field, message if field else f"{path}: {message}")

    def field_for(self, path: str) -> str | None:
        """The form field an issue's path (relative to this form's part of the definition) concerns."""
        if match := ROW_ISSUE.match(path):
            if self.row_key and match["key"] == self.row_key and int(match["index"]) < len(self.kept_rows):
                row = self.kept_rows[int(match["index"])]
                key = match["rest"].split(".")[0].split("[")[0]
                name = f"{self.row_name}_{row}_{key}"
                return name if name in self.fields else None
            return None
        key = path.split(".")[0]
        name = self.aliases().get(key, key)
        if name == "window":
            name = f"window_{path.split('.')[1]}" if "." in path else "window_start"
        return name if name in self.fields else None

    def aliases(self) -> dict[str, str]:
        return {}
