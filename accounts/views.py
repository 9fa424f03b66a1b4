from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.forms import ApiTokenForm
from accounts.models import ApiToken
from accounts.services import create_api_token, revoke_api_token


def _managers_only(request) -> None:
    if not request.user.can_manage:
        raise Http404


@login_required
def tokens(request):
    _managers_only(request)
    form = ApiTokenForm(request.POST or None, initial={"user": request.user})
    new_key = None
    if request.method == "POST" and form.is_valid():
        token, new_key = create_api_token(name=form.cleaned_data["name"], user=form.cleaned_data["user"])
        messages.success(request, _("Token “%(name)s” created.") % {"name": token.name})
        form = ApiTokenForm(initial={"user": request.user})
    context = {"form": form, "tokens": ApiToken.objects.select_related("user"), "new_key": new_key}
    return render(request, "accounts/tokens.html", context)


@login_required
@require_POST
def revoke_token(request, pk: int):
    _managers_only(request)
    token = revoke_api_token(get_object_or_404(ApiToken, pk=pk))
    messages.success(request, _("Token “%(name)s” revoked.") % {"name": token.name})
    return redirect("accounts:tokens")
