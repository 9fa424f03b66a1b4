"""Forms of the messaging pages. Message templates: the editor's form checks the template in the sandbox (tags,
filters, variables, the channel's formats) and puts each problem on the field it belongs to."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from messaging.models import MessageTemplate, TemplateFormat
from messaging.templating import CARD_FIELDS, template_issues

CARD_LABELS = {
    "title": _("Card title"),
    "description": _("Card description"),
    "url": _("Card link (URL)"),
    "image_url": _("Card image (URL)"),
    "appid": _("Mini-program appid"),
    "page": _("Mini-program page"),
}


def _bootstrap(form: forms.BaseForm) -> None:
    for field in form.fields.values():
        css = "form-select" if isinstance(field.widget, forms.Select) else "form-control"
        field.widget.attrs.setdefault("class", css)


def parse_defaults(text: str) -> dict[str, str]:
    """`variable = default` lines (blank lines ignored) as a dict; raises ValidationError naming a bad line."""
    defaults: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        path, separator, value = line.partition("=")
        if not separator or not path.strip():
            message = gettext("Line %(number)d: write “variable = default”.") % {"number": number}
            raise ValidationError(message, code="invalid")
        defaults[path.strip()] = value.strip()
    return defaults


def format_defaults(defaults: dict[str, Any]) -> str:
    return "\n".join(f"{path} = {value}" for path, value in defaults.items())


class MessageTemplateForm(forms.ModelForm):
    """A message template: its text and subject, the card's fields one per input and the defaults as lines."""

    language = forms.ChoiceField(label=_("Language"), choices=settings.LANGUAGES)
    defaults_text = forms.CharField(
        label=_("Defaults for missing variables"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "customer.name = 亲爱的顾客"}),
        help_text=_("One a line: variable = the text used when the customer has no value for it."),
    )

    class Meta:
        model = MessageTemplate
        fields = ["name", "channel", "format", "language", "subject", "body"]
        widgets = {"body": forms.Textarea(attrs={"rows": 6})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        card = self.instance.card or {}
        for name in CARD_FIELDS:
            self.fields[f"card_{name}"] = forms.CharField(
                label=CARD_LABELS[name], required=False, initial=card.get(name, ""), max_length=2000
            )
        if self.instance.defaults:
            self.fields["defaults_text"].initial = format_defaults(self.instance.defaults)
        self.fields["body"].required = False  # a card may go without text; the sandbox check says when not
        _bootstrap(self)

    def clean_defaults_text(self) -> dict[str, str]:
        return parse_defaults(self.cleaned_data.get("defaults_text", ""))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if any(name in self.errors for name in ("channel", "format", "language", "defaults_text")):
            return cleaned  # the sandbox check needs them
        for field, message in template_issues(self.build_template()):
            target = "defaults_text" if field == "defaults" else field
            self.add_error(target if target in self.fields else None, message)
        return cleaned

    def build_template(self) -> MessageTemplate:
        """An unsaved template of what the form holds (never the stored one: a preview shows the edit)."""
        data = self.cleaned_data
        is_card = data.get("format", TemplateFormat.TEXT) != TemplateFormat.TEXT
        card = {name: data[f"card_{name}"] for name in CARD_FIELDS if is_card and data.get(f"card_{name}")}
        return MessageTemplate(
            name=data.get("name", ""),
            channel=data.get("channel", ""),
            format=data.get("format", TemplateFormat.TEXT),
            language=data.get("language", settings.LANGUAGE_CODE),
            subject=data.get("subject", ""),
            body=data.get("body", ""),
            card=card,
            defaults=data.get("defaults_text") or {},
        )

    def save(self, commit: bool = True) -> MessageTemplate:
        built = self.build_template()
        self.instance.card, self.instance.defaults = built.card, built.defaults
        return super().save(commit=commit)
