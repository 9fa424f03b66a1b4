"""WeCom's callback endpoint (the URL entered in the WeCom admin console as 接收事件服务器 URL)."""

from django.urls import path

from messaging.wecom import callback_views

urlpatterns = [
    path("wecom/callback", callback_views.wecom_callback, name="wecom-callback"),
]
