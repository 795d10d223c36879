"""modelport: one model server for the clients you already use.

It serves a versioned model repository over TF Serving's and KServe V2's APIs, with hot reload
that never drops a request.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
