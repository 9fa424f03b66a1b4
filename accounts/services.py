from django.db import transaction
from django.utils import timezone

from accounts.models import ApiToken, User, hash_token_key


def create_api_token(*, name: str, user: User) -> tuple[ApiToken, str]:
    """Create a token acting as `user`; returns it with the plain key, which is shown once and never stored."""
    key = ApiToken.generate_key()
    token = ApiToken.objects.create(name=name, user=user, prefix=key[5:13], key_hash=hash_token_key(key))
    return token, key


def revoke_api_token(token: ApiToken) -> ApiToken:
    """Revoke a token; idempotent (the first revocation time is kept)."""
    with transaction.atomic():
        ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    token.refresh_from_db()
    return token
