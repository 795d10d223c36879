"""``modelport convert``, ``optimize`` and ``quantize``: model conversion behind a parity gate.

Each step builds its result beside the output folder, runs the source and the result on the
same inputs, prints a table (size, latency, errors per output) and moves the result into place
with its ``report.json`` only when every output is within tolerance. Engines are imported only
when a step needs them.
"""

from __future__ import annotations

from modelport.convert.errors import ConversionError as ConversionError
from modelport.convert.gate import GateOptions as GateOptions
from modelport.convert.gate import run_gate as run_gate
from modelport.convert.optimize import optimizer as optimizer
from modelport.convert.quantize import quantizer as quantizer
from modelport.convert.sources import SourceOptions as SourceOptions
from modelport.convert.sources import converter_for as converter_for
from modelport.convert.tolerance import Tolerance as Tolerance
from modelport.convert.tolerance import tolerance_for as tolerance_for

__all__ = [
    "ConversionError",
    "GateOptions",
    "SourceOptions",
    "Tolerance",
    "converter_for",
    "optimizer",
    "quantizer",
    "run_gate",
    "tolerance_for",
]
