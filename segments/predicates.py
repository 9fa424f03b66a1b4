"""The segments app's predicates: membership of a stored segment."""

from django.db.models import Exists, OuterRef, Q
from django.utils.translation import gettext as _

from customers.conditions import Predicate, register
from customers.conditions.registry import check_int_list, reject_unknown
from segments.models import Segment, SegmentMembership

MEMBERSHIP_CHANGES = frozenset({"segment.entered", "segment.exited", "customer.merged"})


def _names(ids: list[int]) -> str:
    names = dict(Segment.objects.filter(pk__in=ids).values_list("pk", "name"))
    return "、".join(f"“{names.get(i, i)}”" for i in ids)


@register
class InSegmentPredicate(Predicate):
    """`{"predicate": "in_segment", "segments": [4, 9]}`: currently a member of any of them (stored membership,
    so a segment built on another reads it instead of re-evaluating its rule)."""

    name = "in_segment"
    params = frozenset({"segments"})
    reacts_to = MEMBERSHIP_CHANGES

    def check(self, node, at, checker):
        reject_unknown(node, self.params, at, checker)
        ids = check_int_list(node, "segments", at, checker)
        if ids:
            known = set(Segment.objects.filter(pk__in=ids).values_list("pk", flat=True))
            if unknown := [i for i in ids if i not in known]:
                checker.error(
                    f"{at}.segments", _("No segment with id %(ids)s.") % {"ids": ", ".join(map(str, unknown))}
                )
        return {"segments": ids}

    def q(self, params, ctx):
        members = SegmentMembership.objects.filter(
            customer=OuterRef("pk"), segment_id__in=params["segments"], exited_at__isnull=True
        )
        return Q(Exists(members))

    def describe(self, params):
        return _("is in the segment %(segments)s") % {"segments": _names(params["segments"])}
