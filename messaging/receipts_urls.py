"""Delivery-status callbacks providers post to (no session, no CSRF: each is verified by its signature)."""

from django.urls import path

from messaging import receipts

urlpatterns = [
    path("messaging/receipts/sms", receipts.sms_receipt, name="messaging-receipt-sms"),
    path("messaging/receipts/webhook", receipts.webhook_receipt, name="messaging-receipt-webhook"),
]
