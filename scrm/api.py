"""API error format: every error carries `detail` and a stable `code`; field errors stay under `errors`."""

from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc, context):
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    code = getattr(exc, "default_code", "error")
    if isinstance(data, dict) and "detail" in data:
        detail = data["detail"]
        response.data = {"detail": str(detail), "code": getattr(detail, "code", code) or code}
    else:
        response.data = {"detail": "Invalid input.", "code": "invalid", "errors": data}
    return response
