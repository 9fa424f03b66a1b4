"""Merging two customer records into one, and undoing it exactly."""

from dataclasses import dataclass

from django.apps import apps
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from django.utils.translation import gettext as _

from customers import domain_events
from customers.exceptions import CustomerError
from customers.models import Customer, CustomerMerge, DomainEventKind


@dataclass(frozen=True)
class MergeRelation:
    """A model whose rows follow their customer on merge; `unique_with` are the fields unique together with it."""

    model_label: str
    customer_field: str = "customer"
    unique_with: tuple[str, ...] = ()


_RELATIONS: dict[str, MergeRelation] = {}


def register_merge_relation(relation: MergeRelation) -> None:
    """Apps register the models that hang off a customer (tags, memberships…) in AppConfig.ready()."""
    model = apps.get_model(relation.model_label)
    model._meta.get_field(relation.customer_field)
    for field_name in relation.unique_with:
        model._meta.get_field(field_name)
    _RELATIONS[relation.model_label] = relation


for _relation in (
    MergeRelation("customers.Identity"),
    MergeRelation("customers.Order"),
    MergeRelation("customers.Event"),
    MergeRelation("customers.Note"),
    MergeRelation("customers.Transfer"),
    MergeRelation("customers.Relationship", unique_with=("staff",)),
    MergeRelation("customers.GroupMembership", unique_with=("group",)),
    MergeRelation("customers.Consent", unique_with=("channel",)),
):
    _RELATIONS[_relation.model_label] = _relation

_FILLABLE = ("name", "birthday", "city", "occupation", "phone", "email", "time_zone", "source_channel_id", "owner_id")


def merge_customers(survivor: Customer, merged: Customer, *, by=None) -> CustomerMerge:
    """Move everything of `merged` onto `survivor`, fill the survivor's blanks, hide `merged`.

    Rows that would collide with the survivor's (the same staff pair, group or consent channel) stay with the
    merged record, so nothing is lost. Locks both customers in pk order.
    """
    if survivor.pk == merged.pk:
        raise CustomerError(_("A customer cannot be merged into itself."), code="merge_self")
    with transaction.atomic():
        locked = {
            c.pk: c for c in Customer.objects.select_for_update().filter(pk__in=[survivor.pk, merged.pk]).order_by("pk")
        }
        survivor, merged = locked[survivor.pk], locked[merged.pk]
        if survivor.merged_into_id or merged.merged_into_id:
            raise CustomerError(_("One of these customers was already merged into another."), code="merge_merged")
        moved: dict[str, list[int]] = {}
        for label, relation in _RELATIONS.items():
            model = apps.get_model(label)
            rows = model._default_manager.filter(**{relation.customer_field: merged})
            if relation.unique_with:
                clash = model._default_manager.filter(
                    **{relation.customer_field: survivor},
                    **{f: OuterRef(f) for f in relation.unique_with},
                )
                rows = rows.exclude(Exists(clash))
            ids = list(rows.values_list("pk", flat=True))
            if ids:
                model._default_manager.filter(pk__in=ids).update(**{relation.customer_field: survivor})
                moved[label] = ids
        original: dict[str, object] = {}
        for field_name in _FILLABLE:
            mine, theirs = getattr(survivor, field_name), getattr(merged, field_name)
            if mine in (None, "") and theirs not in (None, ""):
                original[field_name] = mine
                setattr(survivor, field_name, theirs)
        added_keys = [k for k in merged.attributes if k not in survivor.attributes]
        survivor.attributes = {**survivor.attributes, **{k: merged.attributes[k] for k in added_keys}}
        original["attributes_added"] = added_keys
        original["first_seen_at"] = survivor.first_seen_at.isoformat()
        original["last_seen_at"] = survivor.last_seen_at.isoformat()
        survivor.first_seen_at = min(survivor.first_seen_at, merged.first_seen_at)
        survivor.last_seen_at = max(survivor.last_seen_at, merged.last_seen_at)
        survivor.save()
        merged.merged_into = survivor
        merged.save(update_fields=["merged_into", "updated_at"])
        merge = CustomerMerge.objects.create(
            survivor=survivor, merged=merged, moved=moved, merged_fields=_jsonable(original), merged_by=by
        )
        domain_events.record(DomainEventKind.CUSTOMER_MERGED, [survivor.pk], [{"merged_id": merged.pk}])
        return merge


def undo_merge(merge: CustomerMerge) -> CustomerMerge:
    """Move back exactly what the merge moved and restore the survivor's fields. Refused once undone, or when
    the survivor has itself been merged since."""
    with transaction.atomic():
        merge = CustomerMerge.objects.select_for_update().get(pk=merge.pk)
        if merge.undone_at:
            raise CustomerError(_("This merge was already undone."), code="merge_undone")
        customers = Customer.objects.select_for_update().filter(pk__in=[merge.survivor_id, merge.merged_id])
        locked = {c.pk: c for c in customers.order_by("pk")}
        survivor, merged = locked[merge.survivor_id], locked[merge.merged_id]
        if survivor.merged_into_id:
            raise CustomerError(_("Undo the later merge of this customer first."), code="merge_later")
        for label, ids in merge.moved.items():
            relation = _RELATIONS.get(label, MergeRelation(label))
            model = apps.get_model(label)
            model._default_manager.filter(pk__in=ids, **{relation.customer_field: survivor}).update(
                **{relation.customer_field: merged}
            )
        original = dict(merge.merged_fields)
        for key in original.pop("attributes_added", []):
            survivor.attributes.pop(key, None)
        for field_name in ("first_seen_at", "last_seen_at"):
            setattr(survivor, field_name, original.pop(field_name))
        for field_name, value in original.items():
            setattr(survivor, field_name, value)
        survivor.save()
        merged.merged_into = None
        merged.save(update_fields=["merged_into", "updated_at"])
        merge.undone_at = timezone.now()
        merge.save(update_fields=["undone_at"])
        domain_events.record(
            DomainEventKind.CUSTOMER_UPDATED, [survivor.pk, merged.pk], [{"merge_undone": merge.pk}] * 2
        )
        return merge


def _jsonable(values: dict) -> dict:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in values.items()}
