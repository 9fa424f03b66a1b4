from django.urls import path

from segments.views import editor, layers
from segments.views import segments as views

app_name = "segments"

urlpatterns = [
    path("segments/", views.segment_list, name="list"),
    path("segments/new/", editor.create_segment, name="create"),
    path("segments/new/static/", views.create_static, name="create_static"),
    path("segments/preview/", editor.preview_rule, name="preview"),
    path("segments/<int:pk>/", views.segment_detail, name="detail"),
    path("segments/<int:pk>/edit/", editor.edit_segment, name="edit"),
    path("segments/<int:pk>/delete/", views.delete_segment, name="delete"),
    path("segments/<int:pk>/members/", views.segment_members, name="members"),
    path("segments/<int:pk>/members/add/", views.add_members, name="add_members"),
    path("segments/<int:pk>/members/remove/", views.remove_members, name="remove_members"),
    path("segments/<int:pk>/export/", views.export_segment, name="export"),
    path("segments/<int:pk>/recompute/", views.recompute, name="recompute"),
    path("segments/<int:pk>/freeze/", views.freeze, name="freeze"),
    path("segments/<int:pk>/exclusions/", views.exclude, name="exclude"),
    path("segments/<int:pk>/exclusions/clear/", views.clear_exclusions, name="clear_exclusions"),
    # The layering models: the RFM grid (the section's first page), then AIPL, lifecycle and ladder.
    path("layers/", layers.rfm_page, name="layers"),
    path("layers/migration/", layers.rfm_migration, name="rfm_migration"),
    path("layers/settings/", layers.save_layer_settings, name="layer_settings"),
    path("layers/recompute/", layers.recompute_layers, name="recompute_layers"),
    path("layers/stages/", layers.stages_page, name="stages"),
]
