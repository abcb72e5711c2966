"""Numeric traits that refuse booleans: traitlets takes ``True`` for an ``Int`` or ``Float`` (bool is an int).

``%config ProfileClient.store_max_bytes = True`` became a 1-byte cap that evicted every answer, silently.
"""

from __future__ import annotations

from typing import Any

import traitlets

__all__ = ["Float", "Int"]


# Named as traitlets names them: %config listings print a trait's class name ("ProfileClient.timeout=<Float>").
class Int(traitlets.Int[int, int]):
    """An ``Int`` trait that refuses ``True`` and ``False``."""

    def validate(self, obj: Any, value: Any) -> int:
        if isinstance(value, bool):
            self.error(obj, value)
        return super().validate(obj, value)


class Float(traitlets.Float[float, float]):
    """A ``Float`` trait that refuses ``True`` and ``False``."""

    def validate(self, obj: Any, value: Any) -> float:
        if isinstance(value, bool):
            self.error(obj, value)
        return super().validate(obj, value)
