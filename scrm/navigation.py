"""The dashboard's navigation. Each section appears once its pages exist."""

from django.conf import settings
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

# (label, url name, who sees it)
SECTIONS = [
    (_("Overview"), "dashboard", "all"),
    (_("Customers"), "customers:list", "all"),
    (_("Community groups"), "customers:groups", "all"),
    (_("Tags"), "tags:list", "all"),
    (_("Segments"), "segments:list", "all"),
    (_("Layers"), "segments:layers", "all"),  # 分层: RFM, AIPL, lifecycle, ladder
    (_("Journeys"), "journeys:list", "managers"),  # SOP 旅程: the builder and reports are for operators
    (_("Tasks"), "journeys:tasks", "all"),
    (_("Outbox"), "messaging-outbox", "all"),
    (_("Message templates"), "messaging-template-list", "all"),
    (_("WeCom to-do"), "wecom-todo", "all"),
    (_("Channels"), "messaging-channels", "managers"),
    (_("WeCom setup"), "wecom-setup", "managers"),
    (_("WeCom sandbox"), "wecom-sandbox", "sandbox"),
    (_("Contact policy"), "messaging-policy", "managers"),
    (_("Integrations"), "subscription-list", "managers"),
    (_("API tokens"), "accounts:tokens", "managers"),
]


def navigation(request):
    user = getattr(request, "user", None)
    if not (user and user.is_authenticated):
        return {}
    items = []
    for label, url_name, audience in SECTIONS:
        if audience in ("managers", "sandbox") and not user.can_manage:
            continue
        if audience == "sandbox" and not settings.WECOM_SANDBOX:
            continue
        url = reverse(url_name)
        is_current = request.path == url if url == "/" else request.path.startswith(url)
        items.append({"label": label, "url": url, "is_current": is_current})
    return {"nav_items": items}
