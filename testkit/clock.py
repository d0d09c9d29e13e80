"""A clock the test moves by hand, for code that takes its time from a `clock()` callable."""


class Clock:
    """A clock the test moves by hand: set or add to `now`."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
