from django.contrib import admin
from django.db import transaction

from customers import models as m
from customers.services.ingest import delete_order, record_order_changes
from customers.visibility import customer_visibility_q


class IdentityInline(admin.TabularInline):
    model = m.Identity
    extra = 0


class RelationshipInline(admin.TabularInline):
    model = m.Relationship
    extra = 0
    raw_id_fields = ("staff",)


@admin.register(m.Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "phone", "city", "owner", "source_channel", "last_seen_at", "merged_into")
    list_filter = ("gender", "source_channel")
    search_fields = ("name", "phone", "email", "identities__value")
    raw_id_fields = ("owner", "merged_into", "source_channel")
    inlines = [IdentityInline, RelationshipInline]
    show_full_result_count = False  # no COUNT(*) over a million rows on every page

    def get_queryset(self, request):
        visible = super().get_queryset(request).filter(customer_visibility_q(request.user))
        return visible.select_related("owner", "source_channel")


@admin.register(m.Identity)
class IdentityAdmin(admin.ModelAdmin):
    list_display = ("kind", "namespace", "value", "customer")
    list_filter = ("kind",)
    search_fields = ("value",)
    raw_id_fields = ("customer",)
    show_full_result_count = False


@admin.register(m.Staff)
class StaffAdmin(admin.ModelAdmin):
    list_display = ("name", "wecom_userid", "department", "user", "is_active")
    list_filter = ("is_active", "department")
    search_fields = ("name", "wecom_userid")
    raw_id_fields = ("user",)


@admin.register(m.Relationship)
class RelationshipAdmin(admin.ModelAdmin):
    list_display = ("staff", "customer", "added_at", "add_way", "state", "status")
    list_filter = ("status", "add_way")
    search_fields = ("state", "remark")
    raw_id_fields = ("staff", "customer")
    show_full_result_count = False


@admin.register(m.Transfer)
class TransferAdmin(admin.ModelAdmin):
    list_display = ("customer", "from_staff", "to_staff", "kind", "transferred_at")
    list_filter = ("kind",)
    raw_id_fields = ("customer", "from_staff", "to_staff", "transferred_by")


@admin.register(m.Channel)
class ChannelAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "kind")
    list_filter = ("kind",)
    search_fields = ("code", "name")


@admin.register(m.Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ("sku", "name", "category", "price", "consumption_cycle_days", "is_active")
    list_filter = ("category", "is_active")
    search_fields = ("sku", "name")


class OrderLineInline(admin.TabularInline):
    model = m.OrderLine
    extra = 0
    raw_id_fields = ("product",)


@admin.register(m.Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ("source", "external_id", "customer", "status", "ordered_at", "amount", "refunded_amount")
    list_filter = ("status", "source")
    search_fields = ("external_id",)
    raw_id_fields = ("customer", "channel", "staff")
    inlines = [OrderLineInline]
    show_full_result_count = False

    # Edits here bypass the bulk upsert: each writes its order.updated events (for both customers when the order
    # moved), so auto tags, segments and RFM hear of it like of any other order change.
    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            before = form.initial.get("customer") if change else None
            customers = {obj.customer_id, *([before] if before and before != obj.customer_id else [])}
            record_order_changes([(customer, obj.pk) for customer in sorted(customers)])

    def delete_model(self, request, obj):
        delete_order(obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            record_order_changes(list(queryset.values_list("customer_id", "pk")), deleted=True)
            super().delete_queryset(request, queryset)


@admin.register(m.Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("type", "customer", "occurred_at", "channel")
    list_filter = ("type",)
    raw_id_fields = ("customer", "channel")
    show_full_result_count = False


@admin.register(m.CommunityGroup)
class CommunityGroupAdmin(admin.ModelAdmin):
    list_display = ("name", "chat_id", "group_type", "owner", "created_at")
    search_fields = ("name", "chat_id")
    raw_id_fields = ("owner",)


@admin.register(m.GroupMembership)
class GroupMembershipAdmin(admin.ModelAdmin):
    list_display = ("group", "customer", "joined_at", "left_at")
    raw_id_fields = ("group", "customer")
    show_full_result_count = False


@admin.register(m.Consent)
class ConsentAdmin(admin.ModelAdmin):
    list_display = ("customer", "channel", "status", "changed_at")
    list_filter = ("channel", "status")
    raw_id_fields = ("customer",)


@admin.register(m.Note)
class NoteAdmin(admin.ModelAdmin):
    list_display = ("customer", "author", "created_at")
    raw_id_fields = ("customer", "author")


@admin.register(m.CustomerMerge)
class CustomerMergeAdmin(admin.ModelAdmin):
    list_display = ("survivor", "merged", "merged_at", "undone_at")
    raw_id_fields = ("survivor", "merged", "merged_by")


@admin.register(m.CustomAttribute)
class CustomAttributeAdmin(admin.ModelAdmin):
    list_display = ("key", "label", "type")
    search_fields = ("key", "label")
