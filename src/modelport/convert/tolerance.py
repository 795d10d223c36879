"""How close a result must stay to its source, with the defaults of each step.

An element passes when ``|result - source| <= atol + rtol * |source|`` (numpy's ``allclose``
rule; NaN matches NaN, infinities match themselves). Integer, boolean and string outputs must be
equal. Classifier-like outputs (integer labels, or 2-D float scores with several columns) must
also pick the same class for at least ``min_agreement`` of the rows.

With ``min_cosine`` set, float outputs with rows (2-D and up: embeddings, hidden states) are
judged instead by the cosine similarity of each row (flattened) with the source's row: every
row must reach ``min_cosine``. Element errors are still reported. That is the sensible gate for
embeddings, whose use is their direction, and whose int8 element errors say little.

| step | atol | rtol | min_agreement |
|---|---|---|---|
| convert, optimize | 1e-4 | 1e-3 | 1.0 |
| quantize fp16 | 1e-2 | 1e-2 | 0.99 |
| quantize dynamic-int8, static-int8 | 0.1 | 0.1 | 0.9 |
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["DEFAULTS", "Tolerance", "tolerance_for"]


@dataclass(frozen=True)
class Tolerance:
    """The gate's limits: absolute and relative error, and the share of rows agreeing on a class."""

    atol: float
    rtol: float
    min_agreement: float
    #: When set, the least cosine similarity each row of a float output must keep.
    min_cosine: float | None = None


#: Per step (``convert``, ``optimize``, or the quantize mode).
DEFAULTS: dict[str, Tolerance] = {
    "convert": Tolerance(atol=1e-4, rtol=1e-3, min_agreement=1.0),
    "optimize": Tolerance(atol=1e-4, rtol=1e-3, min_agreement=1.0),
    "fp16": Tolerance(atol=1e-2, rtol=1e-2, min_agreement=0.99),
    "dynamic-int8": Tolerance(atol=0.1, rtol=0.1, min_agreement=0.9),
    "static-int8": Tolerance(atol=0.1, rtol=0.1, min_agreement=0.9),
}


def tolerance_for(
    step: str,
    atol: float | None = None,
    rtol: float | None = None,
    min_agreement: float | None = None,
    min_cosine: float | None = None,
) -> Tolerance:
    """The step's defaults with the values given on the command line in their place."""
    base = DEFAULTS[step]
    return replace(
        base,
        atol=base.atol if atol is None else atol,
        rtol=base.rtol if rtol is None else rtol,
        min_agreement=base.min_agreement if min_agreement is None else min_agreement,
        min_cosine=base.min_cosine if min_cosine is None else min_cosine,
    )
