"""Local fake providers for tests, benchmarks and demos: real servers on 127.0.0.1 that follow the documented
request and response shapes, verify signatures, record every request and act on each idempotency key once.

In a test::

    with FakeWebhookReceiver(secret="s3cret") as receiver:
        ...  # point the webhook channel at receiver.url
        assert receiver.acted_on[key] == 1

In another process (so it outlives Celery workers a test kills)::

    with spawn("webhook", secret="s3cret") as fake:   # python -m messaging.fakes webhook --secret s3cret
        ...  # fake.url, fake.stats(), fake.control(action="fail_next", count=3, status=500)
    fake.final_stats  # written on SIGTERM
"""

from messaging.fakes.base import Answer, FakeHttpServer, Recorded
from messaging.fakes.process import FakeProcess, spawn
from messaging.fakes.sms import FakeSmsGateway
from messaging.fakes.smtp import FakeSmtpServer, ReceivedMail
from messaging.fakes.webhook import FakeWebhookReceiver

__all__ = [
    "Answer",
    "FakeHttpServer",
    "FakeProcess",
    "FakeSmsGateway",
    "FakeSmtpServer",
    "FakeWebhookReceiver",
    "ReceivedMail",
    "Recorded",
    "spawn",
]
