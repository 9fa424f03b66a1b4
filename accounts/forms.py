from django import forms
from django.utils.translation import gettext_lazy as _

from accounts.models import User


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        label=_("Integration name"), max_length=100, widget=forms.TextInput(attrs={"class": "form-control"})
    )
    user = forms.ModelChoiceField(
        label=_("Acts as"),
        queryset=User.objects.filter(is_active=True).order_by("username"),
        help_text=_("The token sees and may change what this user sees and may change."),
        widget=forms.Select(attrs={"class": "form-select"}),
    )
