"""The layering models' pages: the RFM grid with the class migration, its settings and "recompute now"; the AIPL
funnel and the lifecycle and ladder distributions. A rep sees them computed over their own book."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from segments import selectors
from segments.forms import LayeringSettingsForm, MigrationForm
from segments.models import LayeringSettings, LayerModel, RfmClass, RfmRun, Segment
from segments.services import layers as layer_models
from segments.views.segments import require_manager

# What to do with each RFM class (DOMAIN.md, "Layering models").
RFM_ACTIONS = {
    RfmClass.IMPORTANT_VALUE: gettext_lazy("Exclusive perks and VIP service; keep them close."),
    RfmClass.IMPORTANT_DEVELOP: gettext_lazy("Raise the purchase frequency: bundles, refill reminders."),
    RfmClass.IMPORTANT_KEEP: gettext_lazy("Was valuable, now quiet: win them back one to one."),
    RfmClass.IMPORTANT_RETAIN: gettext_lazy("High spend but rare and long ago: retain before they are lost."),
    RfmClass.GENERAL_VALUE: gettext_lazy("Loyal but low spend: raise the order value with upsells."),
    RfmClass.GENERAL_DEVELOP: gettext_lazy("New and light: new-customer offers and content."),
    RfmClass.GENERAL_KEEP: gettext_lazy("Frequent but not recent: keep in touch with reminders."),
    RfmClass.GENERAL_RETAIN: gettext_lazy("Low value and lapsed: discounts, low effort."),
    RfmClass.NO_PURCHASE: gettext_lazy("No purchase in the window: first-order incentives."),
}
UNCLASSIFIED_LABEL = gettext_lazy("Not classified")
# The grid's rows: spend high (重要) then low (一般); its columns: R and F high, R high F low, R low F high, both low.
GRID_ROWS = [
    [RfmClass.IMPORTANT_VALUE, RfmClass.IMPORTANT_DEVELOP, RfmClass.IMPORTANT_KEEP, RfmClass.IMPORTANT_RETAIN],
    [RfmClass.GENERAL_VALUE, RfmClass.GENERAL_DEVELOP, RfmClass.GENERAL_KEEP, RfmClass.GENERAL_RETAIN],
]


def class_labels() -> dict[str, str]:
    """RFM classes by key, "not classified" too, in the active language."""
    return {**{key: str(label) for key, label in RfmClass.choices}, selectors.UNCLASSIFIED: str(UNCLASSIFIED_LABEL)}


def _migration_context(user, form: MigrationForm) -> dict[str, Any]:
    if not form.is_valid():
        return {"migration_form": form}
    migration = selectors.rfm_migration(user, start=form.cleaned_data["start"], end=form.cleaned_data["end"])
    labels = class_labels()
    rows = [
        (labels[row], row, [(column, migration["matrix"][row][column]) for column in migration["classes"]])
        for row in migration["classes"]
    ]
    return {
        "migration_form": form,
        "migration": migration,
        "migration_rows": rows,
        "migration_columns": [(column, labels[column]) for column in migration["classes"]],
    }


def _render_rfm(request: HttpRequest, *, settings_form: LayeringSettingsForm | None = None) -> HttpResponse:
    user = request.user
    grid = selectors.rfm_grid(user)
    by_class = {row["rfm_class"]: row for row in grid["classes"]}
    model_segments = dict(Segment.objects.filter(model_key__startswith="rfm:").values_list("model_key", "pk"))
    for key, row in by_class.items():
        row |= {
            "action": RFM_ACTIONS[key],
            "segment_id": model_segments.get(f"rfm:{key}"),
            "share_percent": row["share"] * 100,
            "gmv_share_percent": row["gmv_share"] * 100,
        }
    today = timezone.localdate()
    migration_form = MigrationForm({"start": (today - timedelta(days=30)).isoformat(), "end": today.isoformat()})
    context: dict[str, Any] = {
        "grid": grid,
        "grid_rows": [[by_class[key] for key in row] for row in GRID_ROWS],
        "no_purchase": by_class[RfmClass.NO_PURCHASE],
        "last_run": RfmRun.objects.first(),
        "can_manage": user.can_manage,
        "migration_form": migration_form,  # the matrix itself is loaded after the page (rfm_migration)
    }
    if user.can_manage:
        context["settings_form"] = settings_form or LayeringSettingsForm(instance=LayeringSettings.load())
    return render(request, "segments/rfm.html", context)


@login_required
def rfm_page(request):
    return _render_rfm(request)


@login_required
def rfm_migration(request):
    """The class-to-class matrix between two dates (HTMX fragment)."""
    context = _migration_context(request.user, MigrationForm(request.GET))
    return render(request, "segments/_rfm_migration.html", context)


@login_required
@require_POST
def save_layer_settings(request):
    require_manager(request)
    form = LayeringSettingsForm(request.POST, instance=LayeringSettings.load())
    if not form.is_valid():
        return _render_rfm(request, settings_form=form)
    form.save()
    messages.success(request, _("RFM settings saved; they apply from the next recompute."))
    return redirect("segments:layers")


@login_required
@require_POST
def recompute_layers(request):
    """Recompute RFM, AIPL, lifecycle and the ladder now (each model on its own; one failing spares the others)."""
    require_manager(request)
    outcomes = layer_models.recompute_layers()
    if failed := {model: outcome["error"] for model, outcome in outcomes.items() if "error" in outcome}:
        messages.error(
            request,
            _("Some models failed: %(errors)s")
            % {"errors": "; ".join(f"{model}: {error}" for model, error in failed.items())},
        )
    else:
        messages.success(request, _("RFM, AIPL, lifecycle and ladder recomputed."))
    return redirect("segments:stages" if request.POST.get("page") == "stages" else "segments:layers")


@login_required
def stages_page(request):
    """The AIPL funnel and the lifecycle and ladder distributions over the customers the user may see."""
    user = request.user
    aipl = selectors.aipl_funnel(user)
    lifecycle = selectors.stage_distribution(user, LayerModel.LIFECYCLE)
    ladder = selectors.stage_distribution(user, LayerModel.LADDER)
    context = {
        "aipl": aipl,
        "distributions": [
            ("lifecycle", LayerModel.LIFECYCLE.label, lifecycle, "lifecycle_stage"),
            ("ladder", LayerModel.LADDER.label, ladder, "ladder_level"),
        ],
        "charts": {
            key: [{"stage": s["stage"], "label": s["label"], "count": s["count"]} for s in model["stages"]]
            for key, model in (("aipl", aipl), ("lifecycle", lifecycle), ("ladder", ladder))
        },
        "can_manage": user.can_manage,
    }
    return render(request, "segments/stages.html", context)
