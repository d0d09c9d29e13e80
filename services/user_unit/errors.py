"""The user unit's error domain and the errors only it raises."""

from services.common.errors import AlreadyExists, NotFound

DOMAIN = "user.llmchatlinker.dev"


class UserNotFound(NotFound):
    """No live user has the id (or the username) asked for."""

    default_reason = "USER_NOT_FOUND"

    def __init__(self, user_id: str = "", *, username: str = ""):
        if username:
            super().__init__(f"no user is named '{username}'", username=username)
        else:
            super().__init__(f"user '{user_id}' not found", user_id=user_id)


class UsernameTaken(AlreadyExists):
    """A live user already has the username."""

    default_reason = "USERNAME_TAKEN"

    def __init__(self, username: str):
        super().__init__(f"username '{username}' is already taken", username=username)


class KeyNotFound(NotFound):
    """No live key has the id asked for."""

    default_reason = "KEY_NOT_FOUND"

    def __init__(self, key_id: str):
        super().__init__(f"no live key has the id '{key_id}'", key_id=key_id)


class KeyTaken(AlreadyExists):
    """A key (live or revoked) already has the id or the hash."""

    default_reason = "KEY_TAKEN"

    def __init__(self, key_id: str):
        super().__init__(f"a key with the id '{key_id}' or the same hash exists already", key_id=key_id)
