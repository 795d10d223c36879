"""The one error of the conversion commands, with the exit code the command ends with.

Exit codes: 0 the result is within tolerance and in place; 1 the parity gate refused the result
(``GATE_FAILED``); 2 the command line or an input file is wrong (``USAGE``); 3 the engine could
not load or convert the model (``CONVERSION_FAILED``).
"""

from __future__ import annotations

__all__ = ["CONVERSION_FAILED", "GATE_FAILED", "USAGE", "ConversionError"]

GATE_FAILED = 1
USAGE = 2
CONVERSION_FAILED = 3


class ConversionError(Exception):
    """A conversion step cannot go on; ``message`` says why and what to do."""

    def __init__(self, message: str, exit_code: int = CONVERSION_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
