"""The tags app's predicates for the condition engine: has_tag and lacks_tag."""

from django.db.models import Exists, OuterRef, Q
from django.utils.translation import gettext as _

from customers.conditions import Predicate, register
from customers.conditions.registry import check_int_list, reject_unknown
from tags.models import CustomerTag, Tag

TAG_CHANGES = frozenset({"tag.added", "tag.removed", "customer.merged"})


def _check_tags(node, at, checker) -> list[int]:
    ids = check_int_list(node, "tags", at, checker)
    if ids:
        known = set(Tag.objects.filter(pk__in=ids).values_list("pk", flat=True))
        if unknown := [i for i in ids if i not in known]:
            checker.error(f"{at}.tags", _("No tag with id %(ids)s.") % {"ids": ", ".join(map(str, unknown))})
    return ids


def _tag_names(ids: list[int]) -> str:
    names = dict(Tag.objects.filter(pk__in=ids).values_list("pk", "name"))
    return "、".join(f"“{names.get(i, i)}”" for i in ids)


def _carries(tag_ids: list[int]) -> Exists:
    return Exists(CustomerTag.objects.filter(customer=OuterRef("pk"), tag_id__in=tag_ids))


@register
class HasTagPredicate(Predicate):
    """`{"predicate": "has_tag", "tags": [3, 5], "match": "any"}` (or "all"): from any source."""

    name = "has_tag"
    params = frozenset({"tags", "match"})
    reacts_to = TAG_CHANGES

    def check(self, node, at, checker):
        reject_unknown(node, self.params, at, checker)
        match = node.get("match", "any")
        if match not in ("any", "all"):
            checker.error(f"{at}.match", _('Expected "any" or "all".'))
        return {"tags": _check_tags(node, at, checker), "match": match}

    def q(self, params, ctx):
        if params["match"] == "all":
            combined = Q()
            for tag_id in params["tags"]:
                combined &= Q(_carries([tag_id]))
            return combined
        return Q(_carries(params["tags"]))

    def describe(self, params):
        if params["match"] == "all" and len(params["tags"]) > 1:
            return _("has all of the tags %(tags)s") % {"tags": _tag_names(params["tags"])}
        if len(params["tags"]) > 1:
            return _("has any of the tags %(tags)s") % {"tags": _tag_names(params["tags"])}
        return _("has the tag %(tags)s") % {"tags": _tag_names(params["tags"])}


@register
class LacksTagPredicate(Predicate):
    """`{"predicate": "lacks_tag", "tags": [3]}`: carries none of them."""

    name = "lacks_tag"
    params = frozenset({"tags"})
    reacts_to = TAG_CHANGES

    def check(self, node, at, checker):
        reject_unknown(node, self.params, at, checker)
        return {"tags": _check_tags(node, at, checker)}

    def q(self, params, ctx):
        return ~Q(_carries(params["tags"]))

    def describe(self, params):
        if len(params["tags"]) > 1:
            return _("has none of the tags %(tags)s") % {"tags": _tag_names(params["tags"])}
        return _("does not have the tag %(tags)s") % {"tags": _tag_names(params["tags"])}
