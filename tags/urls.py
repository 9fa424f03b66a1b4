from django.urls import path

from tags import views

app_name = "tags"

urlpatterns = [
    path("tags/", views.tag_list, name="list"),
    path("tags/groups/new/", views.create_group, name="create_group"),
    path("tags/new/", views.create_tag, name="create"),
    path("tags/bulk/", views.bulk_tag_customers, name="bulk"),
    path("tags/<int:pk>/", views.tag_detail, name="detail"),
    path("tags/<int:pk>/rule/", views.save_tag_rule, name="save_rule"),
    path("tags/<int:pk>/rule/preview/", views.preview_rule, name="preview_rule"),
    path("tags/<int:pk>/rule/run/", views.run_tag_rule, name="run_rule"),
    path("tags/<int:pk>/rule/delete/", views.delete_tag_rule, name="delete_rule"),
    # A customer's tags: under the customer's URL, so every one of them is "not found" for whoever may not see them.
    path("customers/<int:pk>/tags/add/", views.add_customer_tag, name="add_to_customer"),
    path("customers/<int:pk>/tags/<int:tag_id>/remove/", views.remove_customer_tag, name="remove_from_customer"),
]
