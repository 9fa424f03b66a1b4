"""The WeCom setup check: the configuration step by step, each step ok or not with exactly what to do about it.

Steps: the corp ID, the secret, the callback token and EncodingAESKey (checked here, offline, against the formats
WeCom's admin console produces), then against WeCom itself: an access token, a harmless customer-contact read
(get_follow_user_list), and whether WeCom trusts this server's IP; finally the callback URL to paste into the
admin console, with a round trip that signs a URL verification the way WeCom does and sends it to that URL over
real HTTP, so the operator knows the endpoint answers with this token/key pair before WeCom tries.

Values are read with messaging.backends.channel_config (environment first, then the channel settings page);
the report says where each one came from and never contains a secret.
"""

from __future__ import annotations

import base64
import enum
import ipaddress
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.urls import reverse
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from customers.models import MessageChannel
from messaging.backends import channel_config
from messaging.models import ChannelConfig
from messaging.secrets import decrypt
from messaging.wecom.callback_sender import CallbackSender
from messaging.wecom.client import DEFAULT_API_BASE, WeComClient, WeComError

# Where each value can be set: (key, environment variable). Mirrors scrm/settings.py MESSAGING_CHANNELS["wecom"].
VALUES = (
    ("corp_id", "WECOM_CORP_ID"),
    ("secret", "WECOM_SECRET"),
    ("token", "WECOM_TOKEN"),
    ("encoding_aes_key", "WECOM_ENCODING_AES_KEY"),
    ("api_base", "WECOM_API_BASE"),
)
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9]{3,32}")  # the admin console's rule: 3-32 letters or digits
AES_KEY_LENGTH = 43
BASE64_PATTERN = re.compile(r"[A-Za-z0-9+/]*")
TRUSTED_IP_ERRCODE = 60020
# WeCom's 60020 errmsg names the address it saw: "not allow to access from your ip, …, from ip: 1.2.3.4, …".
FROM_IP_PATTERN = re.compile(r"from ip:\s*([0-9A-Fa-f.:]+)")
ROUND_TRIP_TIMEOUT = 10.0


class StepStatus(enum.StrEnum):
    OK = "ok"
    WARNING = "warning"  # works, but something will bite later
    FAILED = "failed"
    SKIPPED = "skipped"  # an earlier step must pass first
    INFO = "info"  # nothing to check here, only what to do


# Each step's heading, by key.
TITLES: dict[str, Promise] = {
    "corp_id": gettext_lazy("Corp ID"),
    "secret": gettext_lazy("Secret"),
    "token": gettext_lazy("Callback token"),
    "encoding_aes_key": gettext_lazy("Callback EncodingAESKey"),
    "access_token": gettext_lazy("Access token"),
    "customer_contact": gettext_lazy("Customer-contact permission"),
    "trusted_ip": gettext_lazy("Trusted IP"),
    "callback_url": gettext_lazy("Callback URL"),
    "callback_round_trip": gettext_lazy("Callback URL round trip"),
}


@dataclass(frozen=True)
class SetupStep:
    key: str
    status: StepStatus
    message: str
    fix: str = ""
    source: str = ""  # where the value came from (never the value of a secret)
    errcode: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return str(TITLES[self.key])

    @property
    def is_ok(self) -> bool:
        return self.status in (StepStatus.OK, StepStatus.WARNING, StepStatus.INFO)


@dataclass(frozen=True)
class SetupReport:
    steps: list[SetupStep]
    callback_url: str

    @property
    def is_ok(self) -> bool:
        return all(step.is_ok for step in self.steps)

    def step(self, key: str) -> SetupStep:
        return next(step for step in self.steps if step.key == key)


_RATE_LIMITED = gettext_lazy("WeCom's call limit for this API is spent for now. Try again in a few minutes.")
# What WeCom's errcodes mean for whoever sets up the corp, and what to do.
ERRCODE_FIXES: dict[int, Promise] = {
    -1: gettext_lazy("WeCom is busy. Try again in a minute."),
    40001: gettext_lazy(
        "WeCom does not accept this secret for this corp ID. Copy the Secret from the admin console: Customer "
        "contact (客户联系) → API → Secret, or the Secret of a self-built app (应用管理) that has customer-contact "
        "permission. A secret of another app, or one reset since you copied it, gives this error."
    ),
    40013: gettext_lazy(
        "WeCom does not know this corp ID. Copy it from My Company (我的企业) → Company information (企业信息), "
        "at the bottom: 企业ID, starting with “ww”."
    ),
    40091: gettext_lazy(
        "The secret is malformed. Open the app in the admin console, view (or reset) the Secret and copy it again "
        "whole, without spaces or line breaks."
    ),
    41002: gettext_lazy("The corp ID is missing from the request: set WECOM_CORP_ID or the Corp ID field."),
    41004: gettext_lazy("The secret is missing from the request: set WECOM_SECRET or the secret field."),
    45009: _RATE_LIMITED,
    45033: _RATE_LIMITED,
    48002: gettext_lazy(
        "This secret may not call the customer-contact API. Use the Customer contact (客户联系) → API secret, or "
        "give your self-built app the permission: Customer contact → API → “apps that may call the API” "
        "(可调用接口的应用)."
    ),
    60011: gettext_lazy(
        "The app may not see these staff members. Widen its visible range (可见范围) in the admin console to the "
        "departments whose staff add customers."
    ),
    TRUSTED_IP_ERRCODE: gettext_lazy(
        "WeCom refuses calls from this server's IP address. Add the address to the app's trusted IPs (企业可信IP, "
        "on the app's page in 应用管理); see the trusted-IP step below."
    ),
}


# ---------------------------------------------------------------------------------------------- where from


def value_sources() -> dict[str, str]:
    """Where each WeCom value comes from: the sandbox, the environment (naming the variable), the channel
    settings page, or nowhere."""
    environment = settings.MESSAGING_CHANNELS.get(MessageChannel.WECOM, {})
    stored = ChannelConfig.objects.filter(channel=MessageChannel.WECOM).first()
    saved = {**stored.options, **(decrypt(stored.secrets) if stored.secrets else {})} if stored is not None else {}
    sandbox = bool(getattr(settings, "WECOM_SANDBOX", False))
    sources = {}
    for key, variable in VALUES:
        if environment.get(key):
            sources[key] = _("sandbox settings") if sandbox else _("environment (%(name)s)") % {"name": variable}
        else:
            sources[key] = _("channel settings page") if saved.get(key) else _("not set")
    return sources


# ---------------------------------------------------------------------------------------- offline checks


def check_corp_id(value: str, *, source: str = "") -> SetupStep:
    where = _("It is on My Company (我的企业) → Company information (企业信息), at the bottom: 企业ID.")
    if not value:
        fix = _("Set WECOM_CORP_ID in the environment or the Corp ID on the channel settings page.") + " " + where
        return SetupStep("corp_id", StepStatus.FAILED, _("The corp ID is missing."), fix, source)
    if value != value.strip() or not value.isalnum():
        message = _("The corp ID contains spaces or other characters that are not letters or digits.")
        return SetupStep("corp_id", StepStatus.FAILED, message, _("Copy it again.") + " " + where, source)
    if not value.startswith(("ww", "wx")):
        message = _("A corp ID starts with “ww” (or “wx” for older corps); this one does not.")
        fix = _("You may have copied an agent ID or a userid instead.") + " " + where
        return SetupStep("corp_id", StepStatus.FAILED, message, fix, source)
    return SetupStep("corp_id", StepStatus.OK, _("The corp ID is set and well-formed."), source=source)


def check_secret(value: str, *, source: str = "") -> SetupStep:
    where = _(
        "Admin console: Customer contact (客户联系) → API → Secret (View), or a self-built app's Secret with "
        "customer-contact permission."
    )
    if not value:
        fix = _("Set WECOM_SECRET in the environment or the secret on the channel settings page.") + " " + where
        return SetupStep("secret", StepStatus.FAILED, _("The secret is missing."), fix, source)
    if value != value.strip() or any(character.isspace() for character in value):
        message = _("The secret contains spaces or line breaks.")
        return SetupStep("secret", StepStatus.FAILED, message, _("Copy it again.") + " " + where, source)
    return SetupStep("secret", StepStatus.OK, _("The secret is set (WeCom checks it below)."), source=source)


def check_token(value: str, *, source: str = "") -> SetupStep:
    where = _(
        "In the admin console, Customer contact (客户联系) → API → Receive events (接收事件服务器) → Set API: "
        "the Token field (“Random” generates one). The same value goes here and there."
    )
    if not value:
        fix = _("Set WECOM_TOKEN in the environment or the callback token on the channel settings page.")
        return SetupStep("token", StepStatus.FAILED, _("The callback token is missing."), f"{fix} {where}", source)
    if not TOKEN_PATTERN.fullmatch(value):
        message = _("The callback token has %(length)d characters; WeCom requires 3 to 32 letters or digits.") % {
            "length": len(value)
        }
        return SetupStep("token", StepStatus.FAILED, message, where, source)
    return SetupStep("token", StepStatus.OK, _("The callback token is set and well-formed."), source=source)


def check_encoding_aes_key(value: str, *, source: str = "") -> SetupStep:
    where = _(
        "The EncodingAESKey field next to the Token in the admin console (“Random” generates one): 43 letters and "
        "digits. Copy it whole into WECOM_ENCODING_AES_KEY or the channel settings page."
    )
    if not value:
        message = _("The EncodingAESKey is missing.")
        return SetupStep("encoding_aes_key", StepStatus.FAILED, message, where, source)
    if len(value) != AES_KEY_LENGTH:
        message = _("The EncodingAESKey has %(length)d characters; it must have exactly 43.") % {"length": len(value)}
        fix = where
        if len(value) == AES_KEY_LENGTH + 1 and value.endswith("="):
            fix = _("Remove the “=” at the end: WeCom's key is base64 without its padding.")
        elif value != value.strip():
            fix = _("Remove the spaces or line breaks around it.")
        return SetupStep("encoding_aes_key", StepStatus.FAILED, message, fix, source)
    if not BASE64_PATTERN.fullmatch(value):
        message = _("The EncodingAESKey contains characters that are not base64 (letters, digits, + and /).")
        return SetupStep("encoding_aes_key", StepStatus.FAILED, message, where, source)
    # 43 base64 characters and the "=" WeCom leaves off always make the 32 bytes of an AES-256 key.
    message = _("The EncodingAESKey is 43 characters of base64 and decodes to a %(bytes)d-byte AES key.") % {
        "bytes": len(base64.b64decode(value + "="))
    }
    return SetupStep("encoding_aes_key", StepStatus.OK, message, source=source)


# ------------------------------------------------------------------------------------------- WeCom itself


def explain(error: WeComError, *, api_base: str) -> str:
    """What a failed call means and what to do, with WeCom's own errcode and errmsg."""
    if error.errcode is None:
        if error.code == "rate_limited":
            return _("Our own per-minute limit for this API is spent; try again in a minute.")
        return _(
            "Could not reach %(url)s (%(error)s). Check that this server can open HTTPS connections to it (firewall, "
            "proxy, DNS)."
        ) % {"url": api_base, "error": error.code}
    hint = ERRCODE_FIXES.get(error.errcode)
    errmsg = str(error.response.get("errmsg", "")).strip()
    said = _("WeCom answered errcode %(errcode)d: %(errmsg)s.") % {"errcode": error.errcode, "errmsg": errmsg or "—"}
    return f"{said} {hint}" if hint else said


def check_api(config: Mapping[str, Any], *, client: WeComClient | None = None) -> list[SetupStep]:
    """The access token, a customer-contact read and the trusted-IP step, against the configured API."""
    api_base = str(config.get("api_base") or DEFAULT_API_BASE)
    owned = client is None
    client = client or WeComClient.from_config(config)
    refused: WeComError | None = None
    steps: list[SetupStep] = []
    try:
        client.fetch_token()
        steps.append(SetupStep("access_token", StepStatus.OK, _("WeCom issued an access token."), source=api_base))
        steps.append(_contact_step(client.get_follow_user_list()))
    except WeComError as error:
        refused = error if error.errcode == TRUSTED_IP_ERRCODE else None
        failed = "customer_contact" if steps else "access_token"  # a token already issued: the read failed
        fix = explain(error, api_base=api_base)
        steps.append(SetupStep(failed, StepStatus.FAILED, _("The call failed."), fix, api_base, error.errcode))
        if failed == "access_token":
            steps.append(SetupStep("customer_contact", StepStatus.SKIPPED, _("Needs an access token first.")))
    finally:
        if owned:
            client.close()
    steps.append(trusted_ip_step(refused=refused, reached=all(step.status == StepStatus.OK for step in steps)))
    return steps


def _contact_step(staff: list[str]) -> SetupStep:
    if not staff:
        fix = _(
            "In the admin console, Customer contact (客户联系) → Permissions (权限配置) → who may use customer contact "
            "(使用范围): add the staff members who add customers."
        )
        message = _("Customer contact works, but no staff member may use it yet.")
        return SetupStep("customer_contact", StepStatus.WARNING, message, fix)
    message = ngettext(
        "Customer contact works: %(count)d staff member may use it (%(names)s).",
        "Customer contact works: %(count)d staff members may use it (%(names)s).",
        len(staff),
    ) % {"count": len(staff), "names": ", ".join(staff[:5]) + ("…" if len(staff) > 5 else "")}
    return SetupStep("customer_contact", StepStatus.OK, message)


def trusted_ip_step(*, refused: WeComError | None, reached: bool) -> SetupStep:
    """Whether WeCom trusts the address this server calls from, and how to find that address."""
    how = _(
        "WeCom must trust the address this server's requests come FROM (its outbound IP, often a NAT gateway's), "
        "not the address you open the site at. Find it on this server with `curl -s https://ifconfig.me`, or ask "
        "your cloud provider for the egress IP; with several servers add each one. Then add it in the admin "
        "console: 应用管理 → your app → 企业可信IP."
    )
    if refused is not None:
        seen = FROM_IP_PATTERN.search(str(refused.response.get("errmsg", "")))
        message = _("WeCom refused the call: this server's IP address is not trusted (errcode 60020).")
        if seen:
            message += " " + _("WeCom saw the call come from %(ip)s: add exactly that address.") % {"ip": seen[1]}
        detail = {"ip": seen[1]} if seen else {}
        return SetupStep("trusted_ip", StepStatus.FAILED, message, how, errcode=TRUSTED_IP_ERRCODE, detail=detail)
    if reached:
        return SetupStep("trusted_ip", StepStatus.OK, _("WeCom accepted calls from this server."), how)
    return SetupStep("trusted_ip", StepStatus.INFO, _("Not known until the calls above succeed."), how)


# --------------------------------------------------------------------------------------------- callback URL


def callback_url(*, request_base: str) -> str:
    """The URL to paste into the admin console: SITE_URL (the public address) if set, else the address this
    page was opened at (`request_base`, e.g. "https://scrm.example.com")."""
    base = str(getattr(settings, "SITE_URL", "") or request_base).rstrip("/")
    return f"{base}{reverse('wecom-callback')}"


def callback_url_step(url: str) -> SetupStep:
    """The URL itself, with a warning when WeCom's servers could not possibly reach it."""
    paste = _(
        "Paste this URL, with the same Token and EncodingAESKey, into the admin console: Customer contact (客户联系) "
        "→ API → Receive events (接收事件服务器) → Set API, then save; WeCom verifies it at once. Test it first "
        "with the button."
    )
    host = urlsplit(url).hostname or ""
    if _is_local(host):
        message = _(
            "This address is only reachable from this machine or network; WeCom's servers cannot call it. Set "
            "SITE_URL to the public address (https://…) and open this page there."
        )
        return SetupStep("callback_url", StepStatus.WARNING, message, paste, detail={"url": url})
    message = _("The URL WeCom will call.")
    return SetupStep("callback_url", StepStatus.INFO, message, paste, detail={"url": url})


def _is_local(host: str) -> bool:
    if host in ("localhost", "testserver") or host.endswith((".local", ".localhost", ".internal")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_private or address.is_loopback or address.is_link_local


def verify_callback_url(url: str, *, config: Mapping[str, Any], http: httpx.Client | None = None) -> SetupStep:
    """WeCom's URL verification, done to `url` over real HTTP: an echo encrypted and signed with the configured
    token, EncodingAESKey and corp ID must come back decrypted. No side effects on the receiving end."""
    token, key, corp_id = (str(config.get(name) or "") for name in ("token", "encoding_aes_key", "corp_id"))
    if not all(
        step.status == StepStatus.OK
        for step in (check_corp_id(corp_id), check_token(token), check_encoding_aes_key(key))
    ):
        message = _("Needs a valid corp ID, callback token and EncodingAESKey first.")
        return SetupStep("callback_round_trip", StepStatus.SKIPPED, message, detail={"url": url})
    echo = secrets.token_hex(12)
    request = CallbackSender(token=token, encoding_aes_key=key, corp_id=corp_id).verification(echo)
    owned = http is None
    http = http or httpx.Client(timeout=ROUND_TRIP_TIMEOUT, follow_redirects=False)
    try:
        response = http.get(request.url(url))
    except httpx.TimeoutException:
        return _round_trip_failed(url, _("%(url)s did not answer within %(seconds)d seconds.") % {
            "url": url, "seconds": int(ROUND_TRIP_TIMEOUT)}, _unreachable_fix())  # fmt: skip
    except httpx.HTTPError as error:
        message = _("Could not connect to %(url)s: %(error)s.") % {
            "url": url,
            "error": str(error) or type(error).__name__,
        }
        return _round_trip_failed(url, message, _unreachable_fix())
    finally:
        if owned:
            http.close()
    body = response.text.strip()
    if response.status_code == 200 and body == echo:
        message = _(
            "The endpoint decrypted WeCom-style verification and answered the echo: this URL, token and "
            "EncodingAESKey work together. Paste them into the admin console."
        )
        return SetupStep("callback_round_trip", StepStatus.OK, message, detail={"url": url, "status": 200})
    message = _("%(url)s answered HTTP %(status)d: %(body)s") % {
        "url": url,
        "status": response.status_code,
        "body": body[:120] or "—",
    }
    return _round_trip_failed(url, message, _round_trip_fix(response, body), status=response.status_code)


def _round_trip_failed(url: str, message: str, fix: str, *, status: int | None = None) -> SetupStep:
    detail: dict[str, Any] = {"url": url, **({"status": status} if status is not None else {})}
    return SetupStep("callback_round_trip", StepStatus.FAILED, message, fix, detail=detail)


def _unreachable_fix() -> str:
    return _(
        "Check the address (SITE_URL), DNS, the firewall and the reverse proxy. This server calling its own public "
        "address can fail where the internet would succeed (no hairpin NAT); then try the URL from outside."
    )


def _round_trip_fix(response: httpx.Response, body: str) -> str:
    status = response.status_code
    if 300 <= status < 400:
        return _("The URL redirects to %(location)s. Enter the final address (usually https://…) instead.") % {
            "location": response.headers.get("location", "?")
        }
    if status == 404:
        return _("Nothing answers at this path: check SITE_URL and the reverse proxy's routing to this application.")
    if status == 503 and body == "not configured":
        return _("The server answering this URL has no valid WeCom callback settings: fix the steps above there.")
    fixes = {
        "bad_signature": _(
            "The server answering this URL has another callback token than this one (another instance or "
            "environment?). Give every instance the same WECOM_TOKEN."
        ),
        "bad_padding": _(
            "The server answering this URL has another EncodingAESKey than this one. Give every instance the same "
            "WECOM_ENCODING_AES_KEY."
        ),
        "bad_receive_id": _("The server answering this URL has another corp ID than this one."),
        "stale_timestamp": _(
            "The clocks differ by more than five minutes: synchronise the servers' time (NTP). WeCom refuses "
            "callbacks the same way."
        ),
    }
    if body in fixes:
        return fixes[body]
    return _(
        "Something other than this application answered (a proxy, a login page or a firewall?). WeCom expects the "
        "decrypted echo as plain text with HTTP 200."
    )


# -------------------------------------------------------------------------------------------------- the report


def run_setup_check(*, request_base: str, client: WeComClient | None = None) -> SetupReport:
    """Every step, in order; calls WeCom only when the credentials are there and well-formed. Never raises for
    a configuration problem: that is what the report is for."""
    config = channel_config(MessageChannel.WECOM)
    sources = value_sources()
    steps = [
        check_corp_id(str(config.get("corp_id") or ""), source=sources["corp_id"]),
        check_secret(str(config.get("secret") or ""), source=sources["secret"]),
        check_token(str(config.get("token") or ""), source=sources["token"]),
        check_encoding_aes_key(str(config.get("encoding_aes_key") or ""), source=sources["encoding_aes_key"]),
    ]
    if steps[0].status == StepStatus.OK and steps[1].status == StepStatus.OK:
        steps.extend(check_api(config, client=client))
    else:
        message = _("Needs a valid corp ID and secret first.")
        steps.extend(SetupStep(key, StepStatus.SKIPPED, message) for key in ("access_token", "customer_contact"))
        steps.append(trusted_ip_step(refused=None, reached=False))
    url = callback_url(request_base=request_base)
    steps.append(callback_url_step(url))
    return SetupReport(steps=steps, callback_url=url)
