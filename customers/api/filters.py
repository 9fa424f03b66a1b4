import django_filters

from customers.models import Customer, Event, Order


class CustomerFilter(django_filters.FilterSet):
    updated_since = django_filters.IsoDateTimeFilter(field_name="updated_at", lookup_expr="gte")
    source_channel = django_filters.CharFilter(field_name="source_channel__code")
    identity = django_filters.CharFilter(field_name="identities__value", distinct=True)

    class Meta:
        model = Customer
        fields = ["city", "gender", "owner", "source_channel", "updated_since", "identity"]


class OrderFilter(django_filters.FilterSet):
    ordered_after = django_filters.IsoDateTimeFilter(field_name="ordered_at", lookup_expr="gte")
    ordered_before = django_filters.IsoDateTimeFilter(field_name="ordered_at", lookup_expr="lt")

    class Meta:
        model = Order
        fields = ["customer", "source", "external_id", "status", "ordered_after", "ordered_before"]


class EventFilter(django_filters.FilterSet):
    occurred_after = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    occurred_before = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="lt")

    class Meta:
        model = Event
        fields = ["customer", "type", "occurred_after", "occurred_before"]
