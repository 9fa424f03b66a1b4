"""The rep's WeCom to-do: mass sends waiting for their confirmation, and the reminder button."""

from django.urls import path

from messaging.wecom import todo_views

urlpatterns = [
    path("messaging/wecom/todo/", todo_views.todo, name="wecom-todo"),
    path("messaging/wecom/todo/remind/", todo_views.remind, name="wecom-remind"),
]
