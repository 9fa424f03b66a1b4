"""Channel credentials saved from the UI are stored encrypted (Fernet, key derived from SECRET_KEY)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.fernet import Fernet
from django.conf import settings


def _fernet() -> Fernet:
    digest = hashlib.sha256(f"scrm.messaging.secrets:{settings.SECRET_KEY}".encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt(values: dict[str, Any]) -> str:
    return _fernet().encrypt(json.dumps(values).encode()).decode()


def decrypt(token: str) -> dict[str, Any]:
    return json.loads(_fernet().decrypt(token.encode()))
