"""Channel settings (admins and operators): per channel the backend in use, which settings come from the
environment (shown as set, never shown), and a form saving options and encrypted secrets into ChannelConfig; a
"send test" that sends a customer a transactional message through the real pipeline; and the console page, what
the console backend "sent".

A stored secret is never rendered back: its field is empty, left empty it keeps the stored value, and a checkbox
removes it. A value set in the environment takes precedence over the stored one (backends.base.channel_config),
so its field is shown disabled and is not saved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from customers import selectors as customer_selectors
from customers.models import MessageChannel
from messaging import selectors
from messaging.models import ChannelConfig, MessageTemplate
from messaging.services.operator import save_channel_config, send_test_message, stored_secret_names
from messaging.views.outbox import decision_log, reason_label, status_tone

CONSOLE_BACKEND = "messaging.backends.console.ConsoleBackend"
CONSOLE_PAGE = 50
CUSTOMER_CHOICES = 8


@dataclass(frozen=True)
class Setting:
    key: str
    label: str | Promise
    kind: str = "text"  # text, url, email, int, bool, textarea, template
    is_secret: bool = False
    env: str = ""  # the environment variable that sets it, if any (scrm/settings.py)
    help: str | Promise = ""


CHANNEL_SETTINGS: dict[str, list[Setting]] = {
    MessageChannel.WECOM: [
        Setting("corp_id", gettext_lazy("Corp ID"), env="WECOM_CORP_ID"),
        Setting("secret", gettext_lazy("Customer-contact secret"), is_secret=True, env="WECOM_SECRET"),
        Setting("agent_id", gettext_lazy("Agent ID"), env="WECOM_AGENT_ID"),
        Setting("token", gettext_lazy("Callback token"), is_secret=True, env="WECOM_TOKEN"),
        Setting(
            "encoding_aes_key", gettext_lazy("Callback EncodingAESKey"), is_secret=True, env="WECOM_ENCODING_AES_KEY"
        ),
        Setting(
            "api_base",
            gettext_lazy("API base URL"),
            kind="url",
            env="WECOM_API_BASE",
            help=gettext_lazy("Empty: WeCom itself (https://qyapi.weixin.qq.com)."),
        ),
        Setting("welcome_template_id", gettext_lazy("Welcome message template"), kind="template"),
        Setting(
            "welcome_text",
            gettext_lazy("Welcome text"),
            kind="textarea",
            help=gettext_lazy("Sent to a new contact when no template is chosen."),
        ),
    ],
    MessageChannel.SMS: [
        Setting("url", gettext_lazy("Gateway URL"), kind="url", env="SMS_GATEWAY_URL"),
        Setting("app_key", gettext_lazy("App key"), env="SMS_GATEWAY_KEY"),
        Setting("app_secret", gettext_lazy("App secret"), is_secret=True, env="SMS_GATEWAY_SECRET"),
        Setting("sign_name", gettext_lazy("Signature"), env="SMS_SIGN_NAME"),
        Setting("template_code", gettext_lazy("Default template code")),
        Setting(
            "temporary_codes",
            gettext_lazy("More temporary error codes"),
            help=gettext_lazy("Comma-separated gateway codes to retry besides the built-in ones."),
        ),
        Setting("concurrency", gettext_lazy("Requests at once"), kind="int"),
    ],
    MessageChannel.EMAIL: [
        Setting("from_email", gettext_lazy("From address"), kind="email", env="MESSAGING_FROM_EMAIL"),
        Setting("host", gettext_lazy("SMTP host")),
        Setting("port", gettext_lazy("SMTP port"), kind="int"),
        Setting("username", gettext_lazy("SMTP user")),
        Setting("password", gettext_lazy("SMTP password"), is_secret=True),
        Setting("use_tls", gettext_lazy("STARTTLS"), kind="bool"),
        Setting("use_ssl", gettext_lazy("SSL/TLS"), kind="bool"),
        Setting("timeout", gettext_lazy("Timeout (seconds)"), kind="int"),
    ],
    MessageChannel.WEBHOOK: [
        Setting("url", gettext_lazy("Endpoint URL"), kind="url", env="WEBHOOK_CHANNEL_URL"),
        Setting("secret", gettext_lazy("Signing secret"), is_secret=True, env="WEBHOOK_CHANNEL_SECRET"),
        Setting("concurrency", gettext_lazy("Requests at once"), kind="int"),
    ],
}


def _require_manager(request: HttpRequest) -> None:
    if not request.user.can_manage:
        raise PermissionDenied


def environment_names(channel: str) -> set[str]:
    """The channel's settings that have a value in the environment (settings.MESSAGING_CHANNELS)."""
    return {key for key, value in settings.MESSAGING_CHANNELS.get(channel, {}).items() if value}


class ChannelForm(forms.Form):
    """One channel's settings: a field per option and secret (see CHANNEL_SETTINGS)."""

    def __init__(self, *args: Any, channel: str, config: ChannelConfig | None, **kwargs: Any) -> None:
        super().__init__(*args, prefix=channel, **kwargs)
        self.channel = channel
        self.from_environment = environment_names(channel)
        self.stored_secrets = stored_secret_names(config)
        options = config.options if config is not None else {}
        for setting in CHANNEL_SETTINGS[channel]:
            field = self._field(setting)
            if setting.key in self.from_environment:
                field.disabled = True
                field.help_text = _("Set in the environment (%(name)s); it takes precedence.") % {"name": setting.env}
            elif not setting.is_secret and options.get(setting.key) is not None:
                value = options[setting.key]
                field.initial = value if isinstance(value, bool) else str(value)
            self.fields[setting.key] = field
            if setting.is_secret and setting.key in self.stored_secrets and setting.key not in self.from_environment:
                self.fields[f"clear_{setting.key}"] = forms.BooleanField(
                    label=_("Remove the stored %(name)s") % {"name": setting.label}, required=False
                )

    def _field(self, setting: Setting) -> forms.Field:
        common: dict[str, Any] = {"label": setting.label, "required": False, "help_text": setting.help}
        if setting.is_secret:
            placeholder = _("Stored — leave empty to keep it") if setting.key in self.stored_secrets else ""
            widget = forms.PasswordInput(render_value=False, attrs={"placeholder": placeholder, "autocomplete": "off"})
            return forms.CharField(widget=widget, max_length=500, strip=True, **common)
        match setting.kind:
            case "url":
                return forms.URLField(max_length=500, assume_scheme="https", **common)
            case "email":
                return forms.EmailField(**common)
            case "int":
                return forms.IntegerField(min_value=1, max_value=10_000, **common)
            case "bool":
                return forms.BooleanField(**common)
            case "textarea":
                return forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=1000, **common)
            case "template":
                templates = MessageTemplate.objects.filter(channel=self.channel).order_by("name")
                choices = [("", _("None: send the welcome text"))] + [(str(t.pk), t.name) for t in templates]
                return forms.ChoiceField(choices=choices, **common)
        return forms.CharField(max_length=500, **common)

    def options(self) -> dict[str, Any]:
        """The options to store: every editable field but the secrets."""
        return {
            setting.key: self.cleaned_data.get(setting.key)
            for setting in CHANNEL_SETTINGS[self.channel]
            if not setting.is_secret and setting.key not in self.from_environment
        }

    def secrets(self) -> dict[str, str]:
        return {
            setting.key: self.cleaned_data.get(setting.key) or ""
            for setting in CHANNEL_SETTINGS[self.channel]
            if setting.is_secret and setting.key not in self.from_environment
        }

    def cleared_secrets(self) -> list[str]:
        return [key for key in self.stored_secrets if self.cleaned_data.get(f"clear_{key}")]

    def rows(self) -> list[tuple[forms.BoundField, forms.BoundField | None]]:
        """Each setting's field with, for a stored secret, the checkbox that removes it."""
        return [
            (self[setting.key], self[f"clear_{setting.key}"] if f"clear_{setting.key}" in self.fields else None)
            for setting in CHANNEL_SETTINGS[self.channel]
        ]

    def bootstrap(self) -> ChannelForm:
        for field in self.fields.values():
            if isinstance(field, forms.BooleanField):
                field.widget.attrs.setdefault("class", "form-check-input")
            else:
                css = "form-select" if isinstance(field.widget, forms.Select) else "form-control"
                field.widget.attrs.setdefault("class", css)
        return self


@dataclass(frozen=True)
class ChannelPanel:
    channel: str
    label: str
    backend: str
    backend_setting: str  # the environment variable that chooses it
    is_console: bool
    environment: list[str]
    stored_secrets: list[str]
    form: ChannelForm


def _panels(bound: ChannelForm | None = None) -> list[ChannelPanel]:
    configs = {config.channel: config for config in ChannelConfig.objects.all()}
    panels = []
    for channel, label in MessageChannel.choices:
        config = configs.get(channel)
        form = bound if bound is not None and bound.channel == channel else ChannelForm(channel=channel, config=config)
        backend = settings.MESSAGING_BACKENDS.get(channel) or settings.MESSAGING_DEFAULT_BACKEND
        panels.append(
            ChannelPanel(
                channel=channel,
                label=str(label),
                backend=backend,
                backend_setting=f"MESSAGING_{channel.upper()}_BACKEND",
                is_console=backend == CONSOLE_BACKEND,
                environment=sorted(environment_names(channel)),
                stored_secrets=sorted(form.stored_secrets - form.from_environment),
                form=form.bootstrap(),
            )
        )
    return panels


def _render_page(request: HttpRequest, *, bound: ChannelForm | None = None, **extra: Any) -> HttpResponse:
    context = {"panels": _panels(bound), "channels": MessageChannel.choices, **extra}
    return render(request, "messaging/channels/settings.html", context)


@login_required
def channel_settings(request: HttpRequest) -> HttpResponse:
    _require_manager(request)
    return _render_page(request)


@login_required
@require_POST
def save_channel(request: HttpRequest, channel: str) -> HttpResponse:
    _require_manager(request)
    if channel not in CHANNEL_SETTINGS:
        raise Http404("No such channel")
    form = ChannelForm(request.POST, channel=channel, config=ChannelConfig.objects.filter(channel=channel).first())
    if not form.is_valid():
        return _render_page(request, bound=form)
    save_channel_config(
        channel=channel, options=form.options(), secrets=form.secrets(), clear_secrets=form.cleared_secrets()
    )
    label = MessageChannel(channel).label
    messages.success(request, _("%(channel)s settings saved.") % {"channel": label})
    return redirect(reverse("messaging-channels") + f"#channel-{channel}")


@login_required
@require_POST
def send_test(request: HttpRequest) -> HttpResponse:
    """Send the chosen customer a test message on the chosen channel and show what happened to it."""
    _require_manager(request)
    channel = request.POST.get("channel", "")
    customer_id = request.POST.get("customer", "")
    error = ""
    if channel not in CHANNEL_SETTINGS:
        error = _("Choose a channel.")
    elif not customer_id.isdigit():
        error = _("Choose a customer to send the test message to.")
    context: dict[str, Any] = {"channel": channel, "error": error}
    if not error:
        customer = customer_selectors.get_customer(request.user, int(customer_id))
        touchpoint = send_test_message(channel=channel, customer=customer, by=request.user)
        context.update(
            touchpoint=touchpoint,
            tone=status_tone(touchpoint.status),
            reason=reason_label(touchpoint.reason) if touchpoint.reason else "",
            decisions=decision_log(touchpoint.decisions),
        )
    return render(request, "messaging/channels/_test_result.html", context)


@login_required
def test_customers(request: HttpRequest) -> HttpResponse:
    """Customers to send a test message to: those matching the search (name, phone, identities)."""
    _require_manager(request)
    term = request.GET.get("q", "").strip()
    customers = customer_selectors.customer_list(request.user, search=term)[:CUSTOMER_CHOICES] if term else []
    return render(request, "messaging/channels/_customer_choices.html", {"customers": customers, "term": term})


@login_required
def console(request: HttpRequest) -> HttpResponse:
    """What the console backend "sent", newest first, paged by id."""
    rows = selectors.console_messages_for(request.user)
    after = request.GET.get("after", "")
    if after.isdigit():
        rows = rows.filter(pk__lt=int(after))
    page = list(rows[: CONSOLE_PAGE + 1])
    context = {
        "console_messages": page[:CONSOLE_PAGE],
        "next_after": page[CONSOLE_PAGE - 1].pk if len(page) > CONSOLE_PAGE else None,
        "is_first_page": not after,
    }
    return render(request, "messaging/channels/console.html", context)
