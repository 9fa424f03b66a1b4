"""Message templates: Django's template language in a sandbox, validated for the editor and rendered in batches
for dispatch.

Templates see plain data built for a whitelist of variables (customer fields and attributes, tags, owner and
sending staff, the triggering order or event, coupon and link placeholders), never model instances. A printed
variable that is missing or empty renders its declared default; without one the render fails (J37: never a
blank or half-filled message). See `sandbox` for the language and `rendering` for the batch renderer.
"""

from messaging.templating.rendering import RenderItem, render_batch, render_preview
from messaging.templating.sandbox import (
    ALLOWED_FILTERS,
    ALLOWED_TAGS,
    CARD_FIELDS,
    CHANNEL_FORMATS,
    REQUIRED_CARD_FIELDS,
    SCHEMA,
    RenderError,
    template_issues,
    validate_template,
    variable_help,
)

__all__ = [
    "ALLOWED_FILTERS",
    "ALLOWED_TAGS",
    "CARD_FIELDS",
    "CHANNEL_FORMATS",
    "REQUIRED_CARD_FIELDS",
    "SCHEMA",
    "RenderError",
    "RenderItem",
    "render_batch",
    "render_preview",
    "template_issues",
    "validate_template",
    "variable_help",
]
