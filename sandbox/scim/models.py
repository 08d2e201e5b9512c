"""The SCIM resources the directory serves (RFC 7643): users with the enterprise extension, and groups.

Only the model types and the manager helpers live here; nothing is stored or served.
"""

from __future__ import annotations

from scim2_models import EnterpriseUser, Group, Manager, ResourceType, User

UserModel = User[EnterpriseUser]
USER_TYPE = ResourceType.from_resource(UserModel)
GROUP_TYPE = ResourceType.from_resource(Group)


def manager_of(user: UserModel) -> str | None:
    extension = user[EnterpriseUser]
    return extension.manager.value if extension is not None and extension.manager is not None else None


def set_manager(user: UserModel, manager_id: str | None) -> None:
    extension = user[EnterpriseUser] or EnterpriseUser()
    extension.manager = Manager(value=manager_id) if manager_id is not None else None
    user[EnterpriseUser] = extension
