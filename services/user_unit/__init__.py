"""The user unit: UserService, which owns the suite's users."""
