from journeys.views import builder_urls, report_urls

app_name = "journeys"

# The builder (list, editor, publish, lifecycle) and the reports (report, trace, tasks) keep their own route lists.
urlpatterns = [*builder_urls.urlpatterns, *report_urls.urlpatterns]
