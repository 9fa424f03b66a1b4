from django.urls import path

from journeys.views import report, tasks

# Included by journeys/urls.py (namespace "journeys").
urlpatterns = [
    path("journeys/<int:pk>/report/", report.journey_report, name="report"),
    path("journeys/<int:pk>/trace/<int:customer_pk>/", report.customer_trace, name="trace"),
    path("tasks/", tasks.task_list, name="tasks"),
    path("tasks/<int:pk>/complete/", tasks.complete, name="task_complete"),
    path("tasks/<int:pk>/cancel/", tasks.cancel, name="task_cancel"),
]
