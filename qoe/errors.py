"""Errors and flags shared by the QoE models (core, no I/O)."""


class QoeInputError(ValueError):
    """An input is outside a model's domain (negative delay, loss above 100 %, NaN, ...).

    `name` is the input as the model calls it; the message names it and the allowed range.
    """

    def __init__(self, name: str, value, allowed: str):
        super().__init__(f"{name}={value!r} is outside the model's domain; allowed: {allowed}")
        self.name = name
        self.value = value
        self.allowed = allowed
