"""A small SMTP server (RFC 5321's EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT; no TLS or AUTH) that keeps
what it receives and acts on each Message-ID once, for testing the email backend over a real socket.
(Python 3.12 drops `smtpd` and aiosmtpd is not a dependency.)"""

from __future__ import annotations

import email
import email.policy
import socketserver
import threading
from collections import Counter, deque
from dataclasses import dataclass
from email.message import EmailMessage

from messaging.fakes.base import ServedInThread


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    recipients: tuple[str, ...]
    message: EmailMessage

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"] or "")


class FakeSmtpServer(ServedInThread, socketserver.ThreadingTCPServer):
    """`refuse(address, code)` answers RCPT TO for that address with `code` (550: permanent, 451: temporary);
    `fail_next_data(count, code)` answers the next DATA commands' end with `code`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), _SmtpHandler)
        self.lock = threading.Lock()
        self.received: list[ReceivedMail] = []
        self.seen: Counter[str] = Counter()  # by Message-ID
        self.acted_on: Counter[str] = Counter()
        self.connections = 0
        self._refusals: dict[str, tuple[int, str]] = {}
        self._data_failures: deque[tuple[int, str]] = deque()

    @property
    def host(self) -> str:
        return str(self.server_address[0])

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def refuse(self, address: str, *, code: int = 550, text: str = "5.1.1 No such user") -> None:
        with self.lock:
            self._refusals[address.lower()] = (code, text)

    def fail_next_data(self, count: int = 1, *, code: int = 451, text: str = "4.3.0 Try again later") -> None:
        with self.lock:
            self._data_failures.extend((code, text) for _ in range(count))

    @property
    def delivered(self) -> list[ReceivedMail]:
        """What a mailbox would show: the first copy of each Message-ID."""
        with self.lock:
            firsts: dict[str, ReceivedMail] = {}
            for mail in self.received:
                firsts.setdefault(mail.message_id, mail)
            return list(firsts.values())

    def refusal_for(self, address: str) -> tuple[int, str] | None:
        with self.lock:
            return self._refusals.get(address.lower())

    def accept(self, mail_from: str, recipients: list[str], data: bytes) -> tuple[int, str]:
        with self.lock:
            if self._data_failures:
                return self._data_failures.popleft()
            message = email.message_from_bytes(data, policy=email.policy.default)
            mail = ReceivedMail(mail_from, tuple(recipients), message)  # type: ignore[arg-type]
            self.received.append(mail)
            self.seen[mail.message_id] += 1
            if self.seen[mail.message_id] == 1:
                self.acted_on[mail.message_id] += 1
        return 250, "2.0.0 Ok: queued"


class _SmtpHandler(socketserver.StreamRequestHandler):
    server: FakeSmtpServer

    def handle(self) -> None:
        with self.server.lock:
            self.server.connections += 1
        self._reply(220, "fake.local ESMTP ready")
        mail_from, recipients = "", []
        while line := self.rfile.readline(65537):
            command, _space, argument = line.decode("utf-8", "replace").rstrip("\r\n").partition(" ")
            verb = command.upper()
            if verb == "EHLO":
                self.wfile.write(b"250-fake.local\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 10485760\r\n")
            elif verb in {"HELO", "NOOP"}:
                self._reply(250, "Ok")
            elif verb == "MAIL":
                mail_from, recipients = _address_of(argument), []
                self._reply(250, "2.1.0 Ok")
            elif verb == "RCPT":
                address = _address_of(argument)
                refusal = self.server.refusal_for(address)
                if refusal is not None:
                    self._reply(*refusal)
                else:
                    recipients.append(address)
                    self._reply(250, "2.1.5 Ok")
            elif verb == "DATA":
                if not recipients:
                    self._reply(503, "5.5.1 No valid recipients")
                    continue
                self._reply(354, "End data with <CR><LF>.<CR><LF>")
                self._reply(*self.server.accept(mail_from, recipients, self._read_data()))
                mail_from, recipients = "", []
            elif verb == "RSET":
                mail_from, recipients = "", []
                self._reply(250, "2.0.0 Ok")
            elif verb == "QUIT":
                self._reply(221, "2.0.0 Bye")
                return
            else:
                self._reply(502, "5.5.2 Command not recognized")

    def _read_data(self) -> bytes:
        lines = []
        while (line := self.rfile.readline(1 << 20)) and line not in {b".\r\n", b".\n"}:
            lines.append(line[1:] if line.startswith(b"..") else line)  # undo dot-stuffing
        return b"".join(lines)

    def _reply(self, code: int, text: str) -> None:
        self.wfile.write(f"{code} {text}\r\n".encode())


def _address_of(argument: str) -> str:
    """ "FROM:<a@b>" or "TO:<a@b> SIZE=…" → "a@b"."""
    _label, _colon, rest = argument.partition(":")
    return rest.strip().split(" ", 1)[0].strip("<>").lower()
