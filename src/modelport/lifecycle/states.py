"""Allowed transitions between ``ModelState`` values, and the check that enforces them.

::

    START ──► LOADING ──► AVAILABLE ──► UNLOADING ──► END
                 │
                 └──► FAILED ──► LOADING (retried when the files or the config change)
                        └──► END
"""

from __future__ import annotations

from modelport.types import ModelState

__all__ = ["IllegalTransition", "check_transition"]

_ALLOWED: dict[ModelState, frozenset[ModelState]] = {
    ModelState.START: frozenset({ModelState.LOADING, ModelState.FAILED, ModelState.END}),
    ModelState.LOADING: frozenset({ModelState.AVAILABLE, ModelState.FAILED}),
    ModelState.AVAILABLE: frozenset({ModelState.UNLOADING}),
    ModelState.UNLOADING: frozenset({ModelState.END}),
    ModelState.FAILED: frozenset({ModelState.LOADING, ModelState.END}),
    ModelState.END: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A version was asked to move between two states that do not connect."""


def check_transition(current: ModelState, new: ModelState, what: str) -> None:
    """Raise ``IllegalTransition`` naming ``what`` unless ``current -> new`` is allowed."""
    if new not in _ALLOWED[current]:
        allowed = ", ".join(sorted(_ALLOWED[current])) or "nothing"
        raise IllegalTransition(
            f"{what} cannot go from {current} to {new}; from {current} it may go to {allowed}"
        )
