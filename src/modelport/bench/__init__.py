"""``modelport bench``: a load generator for model servers, in the spirit of Triton's perf_analyzer.

The modules, in the order a run uses them:

- ``settings``: the command line, parsed and checked into ``BenchSettings``;
- ``server``: the model's V2 metadata and single requests (``http.client``);
- ``workload``: the input tensors, random or from a JSON file;
- ``encoding``: one request body per wire protocol, built once, and the answer checks;
- ``client``: a lean asyncio HTTP/1.1 connection; ``loop``: the uvloop event loop;
- ``modes``: closed loop (concurrency) and open loop (request rate);
- ``measure``: latencies and errors of one step; ``runner``: one step in one process;
- ``pool``: a step spread over worker processes;
- ``stats``, ``report``, ``progress``, ``plot``: the numbers and how they are shown;
- ``session``: one run from start to end.
"""

from modelport.bench.errors import BenchError as BenchError
from modelport.bench.errors import ServerError as ServerError
from modelport.bench.errors import UsageError as UsageError
from modelport.bench.session import run_bench as run_bench
from modelport.bench.settings import BenchSettings as BenchSettings
from modelport.bench.settings import make_settings as make_settings

__all__ = [
    "BenchError",
    "BenchSettings",
    "ServerError",
    "UsageError",
    "make_settings",
    "run_bench",
]
