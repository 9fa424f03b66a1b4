"""A local WeCom: a real HTTP server on 127.0.0.1 that answers the documented request/response JSON of the APIs
messaging.wecom.client calls, with in-memory state. Tests drive it from Python (`FakeWeCom().start()`), the
sandbox mode of `make run` runs it standalone: `python -m messaging.wecom.fake --port 8801`.

It behaves like the platform where our code depends on it: access tokens expire (and `expire_tokens()` forces
it), a bad or expired token gets errcode 40014/42001, mass sends wait until the sender confirms them
(`confirm(msgid, userid)` or POST /sandbox/confirm), a confirmed send reports per recipient 1 sent, 2 not a
friend, 3 received the month's limit, and a welcome code works once within 20 seconds (then errcode 41051).
`fail_next(...)` makes the next calls answer -1, 45009 or a 5xx. Every call is recorded in `calls`, every message
that reached someone is counted in `deliveries` (per external_userid or chat_id).

No Django here: the standalone sandbox imports nothing but the standard library.
"""

from __future__ import annotations

import argparse
import calendar
import collections
import datetime
import json
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

WELCOME_CODE_INVALID = 41051  # the welcome code was used, or its 20 seconds are over
WELCOME_CODE_SECONDS = 20
CHINA = datetime.timezone(datetime.timedelta(hours=8))
# Mass-send statuses, as documented.
TASK_UNSENT, TASK_SENT = 0, 2
RESULT_UNSENT, RESULT_SENT, RESULT_NOT_FRIEND, RESULT_LIMIT = 0, 1, 2, 3


@dataclass
class Call:
    method: str
    path: str  # without /cgi-bin/, e.g. "externalcontact/add_msg_template"
    params: dict[str, str]
    body: dict[str, Any]
    answer: dict[str, Any] | None = None  # None when a 5xx was injected


@dataclass
class MassSend:
    msgid: str
    chat_type: str
    sender: str
    recipients: list[str]
    text: str
    attachments: list[dict[str, Any]]
    created_at: float
    confirmed: dict[str, int] = field(default_factory=dict)  # sender → send_time
    results: dict[str, tuple[int, int]] = field(default_factory=dict)  # recipient → (status, send_time)
    reminders: int = 0


@dataclass
class Failure:
    errcode: int | None
    http_status: int | None
    path: str | None


class FakeWeCom:
    """One corp. Thread-safe: the server answers in threads, tests call the controls from theirs."""

    def __init__(
        self,
        *,
        corp_id: str = "wwfakecorp",
        secret: str = "fake-secret",  # noqa: S107 (the fake corp's, public by design)
        host: str = "127.0.0.1",
        port: int = 0,
        token_seconds: int = 7200,
        monthly_receipts: int | None = None,
    ) -> None:
        self.corp_id = corp_id
        self.secret = secret
        self.token_seconds = token_seconds
        self.monthly_receipts = monthly_receipts  # None: as many as the month has days, WeCom's default
        self.lock = threading.RLock()
        self.tokens: dict[str, float] = {}  # token → expiry (epoch seconds)
        self.failures: collections.deque[Failure] = collections.deque()
        self.staff: set[str] = set()
        self.contacts: dict[str, dict[str, str]] = {}  # external_userid → {"name": …}
        self.follows: dict[str, set[str]] = collections.defaultdict(set)  # staff userid → external_userids
        self.groups: dict[str, dict[str, Any]] = {}
        self.welcome_codes: dict[str, dict[str, Any]] = {}
        self.mass_sends: dict[str, MassSend] = {}
        self.calls: list[Call] = []
        self.welcomes: list[dict[str, Any]] = []
        self.deliveries: collections.Counter[str] = collections.Counter()
        self.monthly: collections.Counter[tuple[str, str]] = collections.Counter()  # (recipient, "2026-11")
        self._ids = iter(range(1, 1 << 62))
        self.server = ThreadingHTTPServer((host, port), _handler_for(self))
        self.server.daemon_threads = True
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeWeCom:
        # A short poll interval: stop() waits for it, and tests stop a fake after each test.
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-wecom", daemon=True
        )
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop answering (idempotent). New connections are refused from now on."""
        if self.thread is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread = None

    def __enter__(self) -> FakeWeCom:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------------- controls

    def config(self) -> dict[str, str]:
        """The channel config pointing our client here."""
        return {"corp_id": self.corp_id, "secret": self.secret, "api_base": self.url}

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens = dict.fromkeys(self.tokens, 0.0)

    def fail_next(
        self, count: int = 1, *, errcode: int | None = -1, http_status: int | None = None, path: str | None = None
    ) -> None:
        """The next `count` calls (to `path` only, e.g. "externalcontact/add_msg_template", if given) answer
        `errcode` or, with `http_status`, that HTTP status."""
        with self.lock:
            self.failures.extend(Failure(errcode, http_status, path) for _ in range(count))

    def add_staff(self, *userids: str) -> None:
        with self.lock:
            self.staff.update(userids)

    def add_contact(self, userid: str, external_userid: str, *, name: str = "") -> None:
        with self.lock:
            self.staff.add(userid)
            self.contacts.setdefault(external_userid, {"name": name or external_userid})
            self.follows[userid].add(external_userid)

    def remove_contact(self, userid: str, external_userid: str) -> None:
        with self.lock:
            self.follows[userid].discard(external_userid)

    def add_group(self, chat_id: str, *, owner: str, name: str = "", members: Iterable[str] = ()) -> None:
        with self.lock:
            self.staff.add(owner)
            self.groups[chat_id] = {"owner": owner, "name": name or chat_id, "members": list(members)}

    def issue_welcome_code(self, userid: str, external_userid: str) -> str:
        """The code an add-contact callback carries: valid for one welcome message within 20 seconds."""
        code = f"WELCOME_{secrets.token_hex(8)}"
        with self.lock:
            self.welcome_codes[code] = {"userid": userid, "external_userid": external_userid, "issued": time.time()}
        return code

    def expire_welcome_code(self, code: str) -> None:
        with self.lock:
            self.welcome_codes[code]["issued"] = 0.0

    def confirm(self, msgid: str, userid: str | None = None) -> None:
        """The sender (or every sender) confirms the mass send in their WeCom: it goes out now."""
        with self.lock:
            mass_send = self.mass_sends[msgid]
            for sender in [userid] if userid else self._senders_of(mass_send):
                self._deliver(mass_send, sender)

    def set_result(self, msgid: str, recipient: str, status: int) -> None:
        with self.lock:
            self.mass_sends[msgid].results[recipient] = (status, int(time.time()) if status == RESULT_SENT else 0)

    def calls_to(self, path: str) -> list[Call]:
        with self.lock:
            return [call for call in self.calls if call.path == path]

    # ------------------------------------------------------------------------------------------- internals

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):08d}{secrets.token_hex(4)}"

    def _senders_of(self, mass_send: MassSend) -> list[str]:
        if mass_send.sender:
            return [mass_send.sender]
        # No sender: every staff member who has one of the recipients gets the task.
        return sorted(u for u, followed in self.follows.items() if followed.intersection(mass_send.recipients))

    def _recipients_of(self, mass_send: MassSend, sender: str) -> list[str]:
        if mass_send.chat_type == "group" or mass_send.sender:
            return mass_send.recipients
        return [r for r in mass_send.recipients if r in self.follows[sender]]

    def _limit_of(self, now: datetime.datetime) -> int:
        return self.monthly_receipts or calendar.monthrange(now.year, now.month)[1]

    def _deliver(self, mass_send: MassSend, sender: str) -> None:
        if sender in mass_send.confirmed:
            return
        now = time.time()
        month = datetime.datetime.fromtimestamp(now, tz=CHINA)
        mass_send.confirmed[sender] = int(now)
        for recipient in self._recipients_of(mass_send, sender):
            if recipient in mass_send.results:  # set by the test beforehand
                continue
            if mass_send.chat_type == "group":
                status = RESULT_SENT if self.groups.get(recipient, {}).get("owner") == sender else RESULT_NOT_FRIEND
            elif recipient not in self.follows[sender]:
                status = RESULT_NOT_FRIEND
            elif self.monthly[(recipient, month.strftime("%Y-%m"))] >= self._limit_of(month):
                status = RESULT_LIMIT
            else:
                status = RESULT_SENT
            if status == RESULT_SENT:
                self.deliveries[recipient] += 1
                self.monthly[(recipient, month.strftime("%Y-%m"))] += 1
            mass_send.results[recipient] = (status, int(now) if status == RESULT_SENT else 0)

    def handle(self, method: str, path: str, params: dict[str, str], body: dict[str, Any]) -> tuple[int, dict]:
        """One request: (HTTP status, JSON answer)."""
        if path.startswith("/sandbox/"):
            return 200, self._sandbox(path.removeprefix("/sandbox/"), body)
        api = path.removeprefix("/cgi-bin/")
        with self.lock:
            call = Call(method, api, params, body)
            self.calls.append(call)
            failure = next((f for f in self.failures if f.path in (None, api)), None)
            if failure is not None:
                self.failures.remove(failure)
                if failure.http_status:
                    return failure.http_status, {"error": "injected"}
                call.answer = {"errcode": failure.errcode, "errmsg": "injected failure"}
                return 200, call.answer
            if api == "gettoken":
                call.answer = self._gettoken(params)
            elif (refusal := self._token_refusal(params.get("access_token", ""))) is not None:
                call.answer = refusal
            else:
                handler = _APIS.get(api)
                call.answer = handler(self, params, body) if handler else _error(404, f"no such api {api}")
            return 200, call.answer

    def _gettoken(self, params: dict[str, str]) -> dict[str, Any]:
        if params.get("corpid") != self.corp_id:
            return _error(40013, "invalid corpid")
        if params.get("corpsecret") != self.secret:
            return _error(40001, "invalid credential")
        now = time.time()
        # Like WeCom: while a token is valid, gettoken answers the same one.
        token, expiry = next(((t, e) for t, e in self.tokens.items() if e > now), (None, 0.0))
        if token is None:
            token, expiry = secrets.token_urlsafe(32), now + self.token_seconds
            self.tokens[token] = expiry
        return {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": int(expiry - now)}

    def _token_refusal(self, token: str) -> dict[str, Any] | None:
        if not token:
            return _error(41001, "access_token missing")
        if token not in self.tokens:
            return _error(40014, "invalid access_token")
        if self.tokens[token] <= time.time():
            return _error(42001, "access_token expired")
        return None

    def _sandbox(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        if action == "confirm":
            if body.get("msgid") not in self.mass_sends:
                return _error(40058, "unknown msgid")
            self.confirm(body["msgid"], body.get("userid") or None)
            return _ok()
        if action == "contact":
            self.add_contact(body["userid"], body["external_userid"], name=body.get("name", ""))
            return _ok(welcome_code=self.issue_welcome_code(body["userid"], body["external_userid"]))
        if action == "remove_contact":
            self.remove_contact(body["userid"], body["external_userid"])
            return _ok()
        if action == "join_group":
            with self.lock:
                if body["chat_id"] not in self.groups:
                    self.add_group(body["chat_id"], owner=body["owner"])
                members = self.groups[body["chat_id"]]["members"]
                if body["external_userid"] not in members:
                    members.append(body["external_userid"])
            return _ok()
        if action == "state":
            with self.lock:
                sends = [
                    {"msgid": m.msgid, "sender": m.sender, "recipients": m.recipients, "confirmed": m.confirmed}
                    for m in self.mass_sends.values()
                ]
                calls = [
                    {"method": c.method, "path": c.path, "errcode": (c.answer or {}).get("errcode", 500)}
                    for c in self.calls[-50:]
                ]
                return _ok(mass_sends=sends, deliveries=dict(self.deliveries), welcomes=self.welcomes, calls=calls)
        return _error(404, f"no such sandbox action {action}")


def _ok(**fields: Any) -> dict[str, Any]:
    return {"errcode": 0, "errmsg": "ok", **fields}


def _error(errcode: int, errmsg: str) -> dict[str, Any]:
    return {"errcode": errcode, "errmsg": errmsg}


def _page(items: list[dict[str, Any]], body: dict[str, Any], default_limit: int) -> tuple[list[dict], str]:
    start = int(body.get("cursor") or 0)
    limit = min(int(body.get("limit") or default_limit), 1000)
    end = start + limit
    return items[start:end], (str(end) if end < len(items) else "")


# ------------------------------------------------------------------------------------------------ the APIs


def _get_external_contact(fake: FakeWeCom, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    external_userid = params.get("external_userid", "")
    if external_userid not in fake.contacts:
        return _error(84061, "not external contact")
    contact = {"external_userid": external_userid, "name": fake.contacts[external_userid]["name"], "type": 1}
    follow = [{"userid": u, "remark": "", "state": ""} for u, f in sorted(fake.follows.items()) if external_userid in f]
    return _ok(external_contact=contact, follow_user=follow, next_cursor="")


def _get_group_chat(fake: FakeWeCom, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    group = fake.groups.get(body.get("chat_id", ""))
    if group is None:
        return _error(40050, "chat_id not found")
    members = [{"userid": m, "type": 2, "join_time": 0, "join_scene": 1} for m in group["members"]]
    chat = {"chat_id": body["chat_id"], "name": group["name"], "owner": group["owner"], "member_list": members}
    return _ok(group_chat={**chat, "create_time": 0, "notice": "", "admin_list": []})


def _get_follow_user_list(fake: FakeWeCom, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    return _ok(follow_user=sorted(fake.staff))


def _send_welcome_msg(fake: FakeWeCom, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    code = fake.welcome_codes.get(body.get("welcome_code", ""))
    if code is None or code.get("used") or time.time() - code["issued"] > WELCOME_CODE_SECONDS:
        return _error(WELCOME_CODE_INVALID, "welcome code used or expired")
    if not body.get("text", {}).get("content") and not body.get("attachments"):
        return _error(41048, "empty message")  # text or an attachment is required
    code["used"] = True
    fake.deliveries[code["external_userid"]] += 1
    fake.welcomes.append({"welcome_code": body["welcome_code"], "external_userid": code["external_userid"], **body})
    return _ok()


def _add_msg_template(fake: FakeWeCom, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    chat_type = body.get("chat_type", "single")
    sender = body.get("sender", "")
    if chat_type not in ("single", "group"):
        return _error(40058, "invalid chat_type")
    if sender and sender not in fake.staff:
        return _error(60111, "invalid userid")
    if not body.get("text", {}).get("content") and not body.get("attachments"):
        return _error(41048, "empty message")
    if chat_type == "group":
        if not sender:
            return _error(40058, "sender is required for group messages")
        wanted = list(body.get("chat_id_list", []))
        failed = [c for c in wanted if fake.groups.get(c, {}).get("owner") != sender]
    else:
        wanted = list(body.get("external_userid", []))
        followed = fake.follows[sender] if sender else set().union(*fake.follows.values())
        failed = [e for e in wanted if e not in followed]
    if not wanted:
        return _error(40058, "no recipients")
    msgid = fake._next_id("msg")
    fake.mass_sends[msgid] = MassSend(
        msgid=msgid,
        chat_type=chat_type,
        sender=sender,
        recipients=[r for r in wanted if r not in failed],
        text=body.get("text", {}).get("content", ""),
        attachments=list(body.get("attachments", [])),
        created_at=time.time(),
    )
    return _ok(fail_list=failed, msgid=msgid)


def _mass_send_of(fake: FakeWeCom, body: dict[str, Any]) -> MassSend | None:
    return fake.mass_sends.get(body.get("msgid", ""))


def _get_groupmsg_task(fake: FakeWeCom, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    mass_send = _mass_send_of(fake, body)
    if mass_send is None:
        return _error(40058, "unknown msgid")
    tasks = []
    for sender in fake._senders_of(mass_send):
        sent_at = mass_send.confirmed.get(sender)
        task = {"userid": sender, "status": TASK_SENT if sent_at else TASK_UNSENT}
        tasks.append({**task, "send_time": sent_at} if sent_at else task)
    page, cursor = _page(tasks, body, 500)
    return _ok(task_list=page, next_cursor=cursor)


def _get_groupmsg_send_result(fake: FakeWeCom, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    mass_send = _mass_send_of(fake, body)
    if mass_send is None:
        return _error(40058, "unknown msgid")
    sender = body.get("userid", "")
    key = "chat_id" if mass_send.chat_type == "group" else "external_userid"
    results = []
    for recipient in fake._recipients_of(mass_send, sender):
        status, send_time = mass_send.results.get(recipient, (RESULT_UNSENT, 0))
        result = {key: recipient, "userid": sender, "status": status}
        results.append({**result, "send_time": send_time} if status == RESULT_SENT else result)
    page, cursor = _page(results, body, 500)
    return _ok(send_list=page, next_cursor=cursor)


def _remind_groupmsg_send(fake: FakeWeCom, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    mass_send = _mass_send_of(fake, body)
    if mass_send is None:
        return _error(40058, "unknown msgid")
    mass_send.reminders += 1
    return _ok()


_APIS = {
    "externalcontact/get": _get_external_contact,
    "externalcontact/groupchat/get": _get_group_chat,
    "externalcontact/get_follow_user_list": _get_follow_user_list,
    "externalcontact/send_welcome_msg": _send_welcome_msg,
    "externalcontact/add_msg_template": _add_msg_template,
    "externalcontact/get_groupmsg_task": _get_groupmsg_task,
    "externalcontact/get_groupmsg_send_result": _get_groupmsg_send_result,
    "externalcontact/remind_groupmsg_send": _remind_groupmsg_send,
}


def _handler_for(fake: FakeWeCom) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like the real API behind httpx's pool

        def _answer(self, method: str) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                status, answer = 200, _error(47001, "data format error")
            else:
                status, answer = fake.handle(method, url.path, dict(parse_qsl(url.query)), body)
            payload = json.dumps(answer, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

        def log_message(self, format: str, *args: Any) -> None:  # quiet: tests make thousands of calls
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="A local WeCom for development and demos.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8801)
    parser.add_argument("--corp-id", default="wwfakecorp")
    parser.add_argument("--secret", default="fake-secret")
    options = parser.parse_args()
    fake = FakeWeCom(corp_id=options.corp_id, secret=options.secret, host=options.host, port=options.port)
    print(f"Fake WeCom on {fake.url} (corp {fake.corp_id}); POST /sandbox/confirm, /sandbox/contact", flush=True)
    try:
        fake.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        fake.server.server_close()


if __name__ == "__main__":
    main()
