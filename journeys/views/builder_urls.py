"""The builder's routes: the journey list, new journeys, the builder page and its fragments, publishing and the
lifecycle buttons (included by journeys/urls.py, namespace "journeys")."""

from django.urls import path

from journeys.views import builder, builder_steps, journey_list

urlpatterns = [
    path("journeys/", journey_list.journey_list, name="list"),
    path("journeys/new/", journey_list.create_journey, name="create"),
    path("journeys/templates/", journey_list.template_list, name="templates"),
    path("journeys/templates/<slug:code>/", journey_list.use_template, name="use_template"),
    path("journeys/<int:pk>/", builder.builder, name="builder"),
    path("journeys/<int:pk>/settings/", builder.edit_settings, name="settings"),
    path("journeys/<int:pk>/trigger/", builder.edit_trigger, name="trigger"),
    path("journeys/<int:pk>/entry/", builder.edit_policies, name="policies"),
    path("journeys/<int:pk>/goal/", builder.edit_goal, name="goal"),
    path("journeys/<int:pk>/steps/new/", builder_steps.add_step, name="add_step"),
    path("journeys/<int:pk>/steps/<str:step_id>/", builder_steps.edit_step, name="step"),
    path("journeys/<int:pk>/steps/<str:step_id>/delete/", builder_steps.delete_step, name="delete_step"),
    path("journeys/<int:pk>/steps/<str:step_id>/move/", builder_steps.move, name="move_step"),
    path("journeys/<int:pk>/validate/", builder.validate_draft, name="validate"),
    path("journeys/<int:pk>/publish/", builder.publish, name="publish"),
    path("journeys/<int:pk>/dry-run/", builder.dry_run, name="dry_run"),
    path("journeys/<int:pk>/pause/", builder.change_status, {"action": "pause"}, name="pause"),
    path("journeys/<int:pk>/resume/", builder.change_status, {"action": "resume"}, name="resume"),
    path("journeys/<int:pk>/stop/", builder.change_status, {"action": "stop"}, name="stop"),
    path("journeys/<int:pk>/archive/", builder.change_status, {"action": "archive"}, name="archive"),
]
