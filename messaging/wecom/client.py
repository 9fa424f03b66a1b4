"""WeCom's server API (developer.work.weixin.qq.com): the access token, external contacts, groups, the welcome
message and enterprise mass sends.

The access token is cached in Redis (Django's cache) until shortly before `expires_in`, so every worker shares
one; a call answered with an invalid/expired-token errcode drops it and is retried once with a fresh one. WeCom
returns the same token to repeated `gettoken` calls while it is valid, so two workers refreshing at once cost
one extra call and nothing else.

Errors raise: `WeComTemporaryError` (system busy -1, frequency limits 45009/45033, HTTP 5xx, timeouts, our own
rate limit: try again later) or `WeComPermanentError` (any other errcode, kept in `errcode`). Every call first
takes one unit of its API's per-minute budget (messaging.ratelimit); when none is left it raises
`WeComRateLimited` with `retry_at` and sends nothing: the caller defers.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from messaging import ratelimit

DEFAULT_API_BASE = "https://qyapi.weixin.qq.com"
# WeCom allows a corp 10,000 calls a minute and 150,000 an hour to each API; 2,500 a minute keeps both.
DEFAULT_PER_MINUTE = 2500
TOKEN_ERRCODES = frozenset({40001, 40014, 42001})  # invalid credential, invalid token, expired token
TEMPORARY_ERRCODES = frozenset({-1, 45009, 45033})  # system busy, API frequency limits
# Refresh the token this long before WeCom says it expires, so no call carries one that expires in flight.
TOKEN_MARGIN_SECONDS = 300
TOKEN_CACHE_PREFIX = "wecom:token"  # noqa: S105 (a cache key, not a secret)
# WeCom's page size limit for the mass-send status APIs.
PAGE_SIZE = 1000


class WeComError(Exception):
    """A call that did not succeed. `code` is what a touchpoint records: the errcode, or e.g. "http_503"."""

    is_temporary = False

    def __init__(
        self, message: str, *, errcode: int | None = None, code: str = "", response: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.errcode = errcode
        self.code = code or (str(errcode) if errcode is not None else "error")
        self.response = response or {}


class WeComTemporaryError(WeComError):
    is_temporary = True


class WeComPermanentError(WeComError):
    is_temporary = False


class WeComRateLimited(WeComTemporaryError):
    """Our per-API budget for this minute is spent; nothing was sent. Try again at `retry_at`."""

    def __init__(self, api: str, *, retry_at: datetime.datetime) -> None:
        super().__init__(f"rate limit of {api} reached", code="rate_limited", response={"api": api})
        self.retry_at = retry_at


@dataclass(frozen=True)
class MassSendCreated:
    """add_msg_template's answer: the mass send's id and the recipients WeCom refused (not sendable)."""

    msgid: str
    fail_list: list[str] = field(default_factory=list)
    response: dict[str, Any] = field(default_factory=dict)


def _error_of(data: Mapping[str, Any]) -> WeComError:
    errcode = int(data.get("errcode", 0))
    message = f"errcode {errcode}: {data.get('errmsg', '')}"
    error_class = WeComTemporaryError if errcode in TEMPORARY_ERRCODES else WeComPermanentError
    return error_class(message, errcode=errcode, response=dict(data))


def _cached(operation: Any, *args: Any, **kwargs: Any) -> Any:
    """A cache operation; Redis unreachable is a temporary error like any other, never an unexpected one."""
    try:
        return operation(*args, **kwargs)
    except (redis.RedisError, OSError) as error:
        raise WeComTemporaryError(str(error), code="redis_unavailable") from error


def message_payload(content: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """Rendered content ({"format", "text", "card"}) as WeCom's `text.content` and `attachments`. Images need a
    URL from WeCom's image upload (or a `media_id`); mini-program cards need the cover's `pic_media_id`."""
    text = str(content.get("text") or "")
    card = content.get("card") or {}
    form = content.get("format") or "text"
    if form == "image":
        image = {"media_id": card["media_id"]} if card.get("media_id") else {"pic_url": card.get("image_url", "")}
        return text, [{"msgtype": "image", "image": image}]
    if form == "link":
        link = {
            "title": card.get("title", ""),
            "picurl": card.get("image_url", ""),
            "desc": card.get("description", ""),
            "url": card.get("url", ""),
        }
        return text, [{"msgtype": "link", "link": link}]
    if form == "miniprogram":
        miniprogram = {
            "title": card.get("title", ""),
            "pic_media_id": card.get("pic_media_id") or card.get("media_id", ""),
            "appid": card.get("appid", ""),
            "page": card.get("page", ""),
        }
        return text, [{"msgtype": "miniprogram", "miniprogram": miniprogram}]
    return text, []


class WeComClient:
    """One corp's API client. Thread-safe (httpx's pool); the token and the rate limits live in Redis."""

    def __init__(
        self,
        *,
        corp_id: str,
        secret: str,
        api_base: str = DEFAULT_API_BASE,
        rate_limits: Mapping[str, int] | None = None,
        per_minute: int = DEFAULT_PER_MINUTE,
        http: httpx.Client | None = None,
    ) -> None:
        self.corp_id = corp_id
        self.secret = secret
        self.api_base = (api_base or DEFAULT_API_BASE).rstrip("/")
        self.rate_limits = dict(rate_limits or {})
        self.per_minute = per_minute
        self.http = http or httpx.Client(timeout=settings.MESSAGING_REQUEST_TIMEOUT)
        # Per corp and secret (an app's secret gets its own token); the secret itself never reaches Redis.
        fingerprint = hashlib.sha256(f"{corp_id}:{secret}".encode()).hexdigest()[:16]
        self.token_key = f"{TOKEN_CACHE_PREFIX}:{fingerprint}"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> WeComClient:
        """From a channel config (messaging.backends.base.channel_config("wecom")): corp_id, secret, api_base, and
        optionally rate_limits ({api path: calls a minute}) and per_minute (every other API)."""
        return cls(
            corp_id=str(config.get("corp_id") or ""),
            secret=str(config.get("secret") or ""),
            api_base=str(config.get("api_base") or DEFAULT_API_BASE),
            rate_limits={str(k): int(v) for k, v in (config.get("rate_limits") or {}).items()},
            per_minute=int(config.get("per_minute") or DEFAULT_PER_MINUTE),
        )

    def close(self) -> None:
        self.http.close()

    # ------------------------------------------------------------------------------------------ access token

    def access_token(self) -> str:
        """The cached token, fetched (and cached for every worker) when there is none."""
        token = _cached(cache.get, self.token_key)
        return token if token else self.fetch_token()

    def fetch_token(self) -> str:
        """A token from /cgi-bin/gettoken, cached until `TOKEN_MARGIN_SECONDS` before it expires."""
        data = self._request(
            "GET", "/cgi-bin/gettoken", api="gettoken", params={"corpid": self.corp_id, "corpsecret": self.secret}
        )
        if data.get("errcode", 0) != 0:
            raise _error_of(data)
        expires_in = int(data.get("expires_in", 7200))
        timeout = max(expires_in - TOKEN_MARGIN_SECONDS, expires_in // 2)
        _cached(cache.set, self.token_key, data["access_token"], timeout=timeout)
        return str(data["access_token"])

    def _drop_token(self, token: str) -> None:
        # Only the token that failed: another worker may already have stored a fresh one.
        if _cached(cache.get, self.token_key) == token:
            _cached(cache.delete, self.token_key)

    # ----------------------------------------------------------------------------------------------- calls

    def _request(
        self,
        method: str,
        path: str,
        *,
        api: str,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One HTTP call within the API's rate limit; transport failures and 5xx are temporary errors."""
        now = timezone.now()
        try:
            granted = ratelimit.take(
                f"wecom:{self.corp_id}:{api}", 1, per_minute=self.rate_limits.get(api, self.per_minute), now=now
            )
        except redis.RedisError as error:  # without the shared counter we cannot know the limit holds
            raise WeComTemporaryError(str(error), code="redis_unavailable") from error
        if not granted:
            raise WeComRateLimited(api, retry_at=ratelimit.next_window(now))
        try:
            response = self.http.request(method, f"{self.api_base}{path}", params=params, json=body)
        except httpx.HTTPError as error:
            raise WeComTemporaryError(str(error) or type(error).__name__, code=type(error).__name__) from error
        if response.status_code >= 500 or response.status_code == 429:
            raise WeComTemporaryError(f"HTTP {response.status_code}", code=f"http_{response.status_code}")
        if not response.is_success:
            raise WeComPermanentError(f"HTTP {response.status_code}", code=f"http_{response.status_code}")
        try:
            data = response.json()
        except ValueError as error:
            raise WeComTemporaryError("not JSON", code="bad_response") from error
        if not isinstance(data, dict):
            raise WeComTemporaryError("not a JSON object", code="bad_response")
        return data

    def call(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None, body: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """An authenticated call to `path` (e.g. "/cgi-bin/externalcontact/get"); returns the answer when errcode
        is 0. A token WeCom calls invalid or expired is replaced and the call made once more."""
        api = path.removeprefix("/cgi-bin/")
        for attempt in (1, 2):
            token = self.access_token()
            data = self._request(method, path, api=api, params={**(params or {}), "access_token": token}, body=body)
            errcode = int(data.get("errcode", 0))
            if errcode in TOKEN_ERRCODES and attempt == 1:
                self._drop_token(token)
                continue
            if errcode != 0:
                raise _error_of(data)
            return data
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------------------------------- contacts

    def get_external_contact(self, external_userid: str, *, cursor: str = "") -> dict[str, Any]:
        """externalcontact/get: the contact and the staff following them (`follow_user`, paged by cursor)."""
        params = {"external_userid": external_userid, **({"cursor": cursor} if cursor else {})}
        return self.call("GET", "/cgi-bin/externalcontact/get", params=params)

    def get_group_chat(self, chat_id: str, *, need_name: bool = True) -> dict[str, Any]:
        """externalcontact/groupchat/get: the group with its members."""
        body = {"chat_id": chat_id, "need_name": int(need_name)}
        return self.call("POST", "/cgi-bin/externalcontact/groupchat/get", body=body)

    def get_follow_user_list(self) -> list[str]:
        """externalcontact/get_follow_user_list: staff userids allowed to use customer contact."""
        return list(self.call("GET", "/cgi-bin/externalcontact/get_follow_user_list").get("follow_user", []))

    # ------------------------------------------------------------------------------------------- sending

    def send_welcome_msg(
        self, welcome_code: str, *, text: str = "", attachments: Sequence[Mapping[str, Any]] = ()
    ) -> dict[str, Any]:
        """externalcontact/send_welcome_msg: the welcome on a new contact; the code works once, within 20 s."""
        body: dict[str, Any] = {"welcome_code": welcome_code}
        if text:
            body["text"] = {"content": text}
        if attachments:
            body["attachments"] = list(attachments)
        return self.call("POST", "/cgi-bin/externalcontact/send_welcome_msg", body=body)

    def add_msg_template(
        self,
        *,
        chat_type: str = "single",
        sender: str = "",
        external_userids: Sequence[str] = (),
        chat_ids: Sequence[str] = (),
        text: str = "",
        attachments: Sequence[Mapping[str, Any]] = (),
    ) -> MassSendCreated:
        """externalcontact/add_msg_template: an enterprise mass send, delivered once `sender` confirms it in WeCom
        (chat_type "single" to external_userids, "group" to the sender's groups in chat_ids)."""
        body: dict[str, Any] = {"chat_type": chat_type, "allow_select": False}
        if sender:
            body["sender"] = sender
        if chat_type == "group":
            body["chat_id_list"] = list(chat_ids)
        else:
            body["external_userid"] = list(external_userids)
        if text:
            body["text"] = {"content": text}
        if attachments:
            body["attachments"] = list(attachments)
        data = self.call("POST", "/cgi-bin/externalcontact/add_msg_template", body=body)
        return MassSendCreated(
            msgid=str(data.get("msgid", "")), fail_list=list(data.get("fail_list", [])), response=data
        )

    def get_groupmsg_task(self, msgid: str, *, cursor: str = "", limit: int = PAGE_SIZE) -> dict[str, Any]:
        """externalcontact/get_groupmsg_task: per sender, whether they sent (confirmed) it: status 0 no, 2 yes."""
        body = {"msgid": msgid, "limit": limit, **({"cursor": cursor} if cursor else {})}
        return self.call("POST", "/cgi-bin/externalcontact/get_groupmsg_task", body=body)

    def get_groupmsg_send_result(
        self, msgid: str, userid: str, *, cursor: str = "", limit: int = PAGE_SIZE
    ) -> dict[str, Any]:
        """externalcontact/get_groupmsg_send_result: per recipient of one sender, status 0 not sent, 1 sent,
        2 not a friend, 3 already received the limit of mass messages."""
        body = {"msgid": msgid, "userid": userid, "limit": limit, **({"cursor": cursor} if cursor else {})}
        return self.call("POST", "/cgi-bin/externalcontact/get_groupmsg_send_result", body=body)

    def iter_groupmsg_tasks(self, msgid: str, *, page_size: int = PAGE_SIZE) -> Iterator[dict[str, Any]]:
        cursor = ""
        while True:
            page = self.get_groupmsg_task(msgid, cursor=cursor, limit=page_size)
            yield from page.get("task_list", [])
            cursor = page.get("next_cursor", "")
            if not cursor:
                return

    def iter_groupmsg_send_results(
        self, msgid: str, userid: str, *, page_size: int = PAGE_SIZE
    ) -> Iterator[dict[str, Any]]:
        cursor = ""
        while True:
            page = self.get_groupmsg_send_result(msgid, userid, cursor=cursor, limit=page_size)
            yield from page.get("send_list", [])
            cursor = page.get("next_cursor", "")
            if not cursor:
                return

    def remind_groupmsg_send(self, msgid: str) -> dict[str, Any]:
        """externalcontact/remind_groupmsg_send: nudge the senders who have not confirmed `msgid` yet."""
        return self.call("POST", "/cgi-bin/externalcontact/remind_groupmsg_send", body={"msgid": msgid})
