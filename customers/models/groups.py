from django.db import models
from django.utils.translation import gettext_lazy as _

from customers.querysets import CustomerOwnedQuerySet


class CommunityGroup(models.Model):
    """A WeCom customer group (客户群)."""

    chat_id = models.CharField(_("WeCom chat_id"), max_length=64, unique=True)
    name = models.CharField(_("name"), max_length=100)
    group_type = models.CharField(
        _("type"), max_length=50, blank=True, help_text=_("Operators' own label, e.g. mums, new customers.")
    )
    owner = models.ForeignKey(
        "customers.Staff", on_delete=models.SET_NULL, null=True, blank=True, related_name="owned_groups"
    )
    created_at = models.DateTimeField(_("created at"))
    dismissed_at = models.DateTimeField(_("dismissed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("community group")
        verbose_name_plural = _("community groups")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class GroupMembership(models.Model):
    """A customer's membership of a group: the latest join, and when they left (empty while a member)."""

    group = models.ForeignKey(CommunityGroup, on_delete=models.CASCADE, related_name="memberships")
    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="group_memberships")
    joined_at = models.DateTimeField(_("joined at"))
    left_at = models.DateTimeField(_("left at"), null=True, blank=True)
    join_scene = models.CharField(_("join scene"), max_length=32, blank=True)

    objects = CustomerOwnedQuerySet.as_manager()

    class Meta:
        verbose_name = _("group membership")
        verbose_name_plural = _("group memberships")
        constraints = [models.UniqueConstraint(fields=["group", "customer"], name="group_membership_unique")]

    def __str__(self) -> str:
        return f"{self.customer_id} in {self.group_id}"
