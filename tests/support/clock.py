"""A clock the test moves by hand (the server's and group's deadlines)."""


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t
