"""The expression the user set (the sliders, or `live --expression`): held once, in an `ExpressionState`.

The window's controller (or the `live` command) owns one; each LiveSession it starts reads it when it spawns a
worker and is told of every change, which it forwards to its workers. The sliders only show it and set it; the
settings file gets a copy when the window saves. The worker process keeps its own copy: the process boundary.
"""

from __future__ import annotations

import threading
from typing import Callable, Mapping

from avatar_desktop.config import check_expression

Listener = Callable[[dict[str, float]], None]


class ExpressionState:
    """{component: value in [-1, 1]} (config.EXPRESSION_COMPONENTS; missing ones are neutral).

    `values` is a copy, safe to read from any thread; `set()` validates, stores and tells every subscriber (on the
    caller's thread); `subscribe(listener)` returns the function that unsubscribes it.
    """

    def __init__(self, values: Mapping[str, float] | None = None):
        self._values = check_expression(values or {})
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    @property
    def values(self) -> dict[str, float]:
        return dict(self._values)

    def set(self, values: Mapping[str, float]) -> None:
        """ValueError (nothing changes) for unknown names or values outside [-1, 1]."""
        checked = check_expression(values)
        with self._lock:
            self._values = checked
            listeners = list(self._listeners)
        for listener in listeners:
            listener(dict(checked))

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe
