"""A secret value that never shows itself, and the traitlets type that holds one."""

from __future__ import annotations

import json
import os
from typing import Any

from traitlets import TraitError, TraitType

__all__ = ["MASK", "Secret", "SecretTrait", "redact"]

MASK = "********"


class Secret:
    """A string that prints as asterisks; only :meth:`reveal` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret itself, for the one place that must send it."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __repr__(self) -> str:
        return f"<secret {MASK}>" if self._value else "<secret unset>"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        # Immutable, and traitlets deep-copies Config objects (which may hold one) when a Configurable is built.
        return self

    def __reduce__(self) -> Any:
        # Pickling (e.g. a kernel's variable inspector or a cache) must not carry the key either.
        raise TypeError("Secret values cannot be pickled")


class SecretTrait(TraitType[Secret, Secret | str | None]):
    """A trait that stores a :class:`Secret`; strings assigned to it are wrapped on the way in.

    ``%config`` prints a trait's current value with ``%r``; wrapping means it prints asterisks.
    """

    info_text = "a secret string"

    def __init__(self, *, env: str, help: str) -> None:
        self._env = env
        super().__init__(help=help)

    def make_dynamic_default(self) -> Secret:
        # Stripped like an assigned key: a key file or .env line often ends in a newline.
        return Secret(os.environ.get(self._env, "").strip())

    def validate(self, obj: Any, value: Any) -> Secret:
        if isinstance(value, Secret):
            return value
        if value is None:
            return Secret("")
        if isinstance(value, str):
            return Secret(value.strip())
        # Not self.error(): traitlets' message shows the rejected value, and a key given as bytes is still a key.
        owner = f" of a {type(obj).__name__} instance" if obj is not None else ""
        kind = type(value).__name__
        raise TraitError(f"The '{self.name}' trait{owner} expected a secret string, not a value of type {kind}.")

    def default_value_repr(self) -> str:
        return f"${self._env} or unset"


def redact(text: str, secret: str, *, mask: str = MASK) -> str:
    """``text`` with ``secret``, and its JSON-escaped spelling, replaced by ``mask``."""
    if not secret:
        return text
    for spelling in {secret, json.dumps(secret)[1:-1]}:
        text = text.replace(spelling, mask)
    return text
