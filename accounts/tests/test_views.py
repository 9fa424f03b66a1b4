import pytest
from django.urls import reverse

from accounts.models import ApiToken, Role
from accounts.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_operator_creates_a_token_and_sees_the_key_once(client):
    operator = UserFactory(username="op", role=Role.OPERATOR)
    client.force_login(operator)

    created = client.post(reverse("accounts:tokens"), {"name": "有赞店铺", "user": operator.pk})
    listed = client.get(reverse("accounts:tokens"))

    key = created.context["new_key"]
    assert key.startswith("scrm_")
    assert key in created.content.decode()
    assert key not in listed.content.decode()
    token = ApiToken.objects.get()
    assert (token.name, token.user, token.prefix) == ("有赞店铺", operator, key[5:13])


def test_revoking_a_token(client):
    operator = UserFactory(username="op", role=Role.OPERATOR)
    client.force_login(operator)
    client.post(reverse("accounts:tokens"), {"name": "pos", "user": operator.pk})
    token = ApiToken.objects.get()

    client.post(reverse("accounts:revoke_token", args=[token.pk]))

    token.refresh_from_db()
    assert token.revoked_at is not None


@pytest.mark.parametrize("role", [Role.ANALYST, Role.SALES])
def test_only_admins_and_operators_manage_tokens(client, role):
    client.force_login(UserFactory(username="u", role=role))

    assert client.get(reverse("accounts:tokens")).status_code == 404
    assert client.post(reverse("accounts:tokens"), {"name": "x", "user": 1}).status_code == 404
    assert not ApiToken.objects.exists()
