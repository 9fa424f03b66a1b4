from rest_framework import permissions


class RolePermission(permissions.BasePermission):
    """Signed-in users may read; analysts may not write. What rows they see is decided by the selectors."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if request.method in permissions.SAFE_METHODS:
            return True
        required = getattr(view, "write_requires_manage", False)
        return user.can_manage if required else user.can_write
