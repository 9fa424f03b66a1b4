import pytest

from messaging.tests.backends import ScriptedBackend


@pytest.fixture
def scripted(settings):
    """Every channel goes through the scripted backend."""
    ScriptedBackend.reset()
    channels = ("wecom", "sms", "email", "webhook")
    settings.MESSAGING_BACKENDS = dict.fromkeys(channels, "messaging.tests.backends.ScriptedBackend")
    yield ScriptedBackend
    ScriptedBackend.reset()
