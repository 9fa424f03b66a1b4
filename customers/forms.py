from django import forms
from django.utils.translation import gettext_lazy as _

from customers.models import Channel, Gender, Staff
from customers.visibility import sees_all_customers


class CustomerFilterForm(forms.Form):
    q = forms.CharField(required=False, label=_("Search"))
    city = forms.CharField(required=False, label=_("City"))
    gender = forms.ChoiceField(required=False, label=_("Gender"), choices=[("", _("Any gender")), *Gender.choices])
    owner = forms.TypedChoiceField(required=False, label=_("Owner"), coerce=int, empty_value=None)
    channel = forms.ChoiceField(required=False, label=_("Source channel"))

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        # Plain choice lists, read once: one query each however the template walks them.
        self.fields["channel"].choices = [("", _("Any channel")), *Channel.objects.values_list("code", "name")]
        if sees_all_customers(user):
            staff = Staff.objects.filter(is_active=True).order_by("name").values_list("pk", "name")
            self.fields["owner"].choices = [("", _("Any owner")), *staff]
        else:
            del self.fields["owner"]  # a rep's list holds only their own customers

    def search_term(self) -> str:
        return self.cleaned_data.get("q", "") if self.is_bound and self.is_valid() else ""

    def filters(self) -> dict:
        data = self.cleaned_data
        return {
            "city": data.get("city") or None,
            "gender": data.get("gender") or None,
            "owner_id": data.get("owner"),
            "source_channel__code": data.get("channel") or None,
        }
