"""The composition root: builds every component from the settings, serves, and shuts down.

Start-up: bind the HTTP port (so a port clash fails at once), answer liveness, load the
repository, then report ready. Shut-down, on SIGTERM or Ctrl-C: readiness turns false at once,
new requests get 503, requests in flight finish (up to ``server.drain_timeout_s``), models unload,
and the process exits 0. A second signal stops at once.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor

from modelport import __version__
from modelport.config import LifecycleSettings, RepositorySettings, Settings
from modelport.core.dataplane import DataPlane
from modelport.core.dispatch import Dispatcher
from modelport.core.scheduling import make_scheduler
from modelport.core.stats import Observers
from modelport.lifecycle.control import RepositoryController
from modelport.lifecycle.manager import ModelManager, ModelVersion
from modelport.lifecycle.repository import (
    DirectoryRepository,
    OnceLog,
    RepositorySource,
    SingleModelRepository,
)
from modelport.lifecycle.tfbatching import batching_defaults, parse_batching_parameters
from modelport.lifecycle.tfconfig import ConfigFileRepository
from modelport.lifecycle.watcher import RepositoryWatcher
from modelport.listeners.grpc import GrpcLimits, GrpcListener
from modelport.listeners.http import HttpLimits, HttpListener
from modelport.observability.metrics import Metrics
from modelport.protocols.grpc import GrpcApp, Service
from modelport.protocols.grpc_health import HealthService
from modelport.protocols.grpc_reflection import ReflectionService
from modelport.protocols.http import HttpApp, Mount
from modelport.protocols.kserve_v2.grpc import KServeV2Grpc
from modelport.protocols.kserve_v2.rest import KServeV2Rest
from modelport.protocols.prometheus import metrics_mount
from modelport.protocols.tfserving.grpc import TFServingGrpc
from modelport.protocols.tfserving.rest import TFServingRest
from modelport.protocols.torchserve.rest import TorchServeRest
from modelport.runtimes import available_cpus

__all__ = ["ModelportServer", "StartupError", "build_source", "configure_logging", "serve"]

log = logging.getLogger("modelport")

EXIT_OK = 0
EXIT_STARTUP_FAILED = 1
EXIT_FORCED = 1


class StartupError(Exception):
    """The server cannot start; the message says why and what to change."""


def model_defaults(settings: LifecycleSettings) -> dict[str, object]:
    """``config.yaml`` settings every model gets unless it says otherwise (TF Serving batching)."""
    if not settings.enable_batching:
        return {}
    try:
        if settings.batching_parameters_file is None:
            config, threads = parse_batching_parameters("")
            return {"dynamic_batching": config, "instances": threads}
        return batching_defaults(settings.batching_parameters_file)
    except ValueError as exc:
        raise StartupError(str(exc)) from exc


def build_source(
    settings: RepositorySettings, once: OnceLog, defaults: dict[str, object] | None = None
) -> RepositorySource:
    """The repository source the settings name."""
    if settings.model_config_file is not None:
        try:
            return ConfigFileRepository(
                settings.model_config_file,
                settings.model_config_file_poll_wait_seconds,
                once,
                defaults,
            )
        except ValueError as exc:
            raise StartupError(str(exc)) from exc
    if settings.model_base_path is not None:
        if not settings.model_base_path.is_dir():
            raise StartupError(f"--model_base_path {settings.model_base_path} is not a folder")
        name = settings.model_name or "default"
        return SingleModelRepository(name, settings.model_base_path, once, defaults)
    if settings.model_repository is not None:
        if not settings.model_repository.is_dir():
            raise StartupError(
                f"the model repository {settings.model_repository} does not exist or is not a "
                "folder; point --model-repository at a folder of <model>/<version>/ folders"
            )
        return DirectoryRepository(settings.model_repository, once, defaults)
    raise StartupError(
        "no models to serve: give --model-repository DIR (or TF Serving's --model_base_path "
        "or --model_config_file)"
    )


def _bind(host: str, port: int, flag: str = "--http-port") -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        raise StartupError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another port with "
            f"{flag} or stop the process using it"
        ) from exc
    sock.set_inheritable(True)
    return sock


def _poll_interval(settings: Settings) -> float:
    """How often to scan: the shorter of the folder and config-file intervals that are set.

    A TF Serving config file is re-read during a scan, so it is checked at least that often.
    """
    repository = settings.repository
    intervals = [repository.poll_interval_s]
    if repository.model_config_file is not None:
        intervals.append(repository.model_config_file_poll_wait_seconds)
    positive = [interval for interval in intervals if interval > 0]
    return min(positive) if positive else 0.0


class ModelportServer:
    """One modelport process: HTTP listener, dataplane, model manager and repository watcher."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        lifecycle = settings.lifecycle
        self.metrics = Metrics()
        self.source = build_source(
            settings.repository, OnceLog(), model_defaults(settings.lifecycle)
        )
        self.manager = ModelManager(
            load_threads=lifecycle.load_threads,
            load_timeout_s=lifecycle.load_timeout_s,
            strict_readiness=lifecycle.strict_readiness,
            prepare=self._prepare,
            on_load_failure=self.metrics.on_load_failure,
        )
        self.watcher = RepositoryWatcher(self.source, self.manager, _poll_interval(settings))

        threads = settings.server.infer_threads or 2 * available_cpus()
        self.infer_pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="infer")
        self.dispatcher = Dispatcher(self.infer_pool, settings.server.inline_compute_us / 1e6)
        self.dataplane = DataPlane(
            self.manager,
            self.dispatcher,
            self.metrics,
            RepositoryController(self.watcher, self.manager, self.source)
            if settings.lifecycle.model_control
            else None,
        )

        self.metrics.watch_queues(self.manager.queue_depths)
        torchserve = TorchServeRest(self.dataplane)
        self.http_app = self._http_app(
            TFServingRest(self.dataplane).mount(),
            KServeV2Rest(self.dataplane).mount(),
            torchserve.mount(),
            metrics_mount(self.metrics.render),
        )
        #: The optional port serving TorchServe's inference API alone (--torchserve-port).
        self.torchserve_app = (
            self._http_app(torchserve.mount(catch_all=True))
            if settings.server.torchserve_port is not None
            else None
        )
        self.grpc_app = self._grpc_app()
        self._stop = asyncio.Event()
        self._signals = 0
        #: Set when shutdown left engine work running (a stuck request or a load under way):
        #: threads that cannot be interrupted would keep the process alive.
        self.abandoned_work = False

    def _http_app(self, *mounts: Mount) -> HttpApp:
        return HttpApp(
            mounts,
            max_body_bytes=self.settings.server.max_body_bytes,
            is_draining=lambda: self.dataplane.draining,
        )

    def _grpc_app(self) -> GrpcApp:
        services: list[Service] = [
            KServeV2Grpc(self.dataplane).service(),
            *TFServingGrpc(self.dataplane).services(),
        ]
        names = [s.name for s in services]
        health = HealthService(self.dataplane.server_ready, names)
        reflection = ReflectionService(lambda: [s.name for s in self.grpc_app.services])
        services += [health.service(), *reflection.services()]
        return GrpcApp(services, draining=lambda: self.dataplane.draining)

    @property
    def http_apps(self) -> list[HttpApp]:
        """Every HTTP application a listener serves: drained together at shutdown."""
        return [app for app in (self.http_app, self.torchserve_app) if app is not None]

    def _prepare(self, version: ModelVersion) -> None:
        """A version that just loaded gets its metrics and its scheduler."""
        version.executions = Observers(
            [self.metrics.for_version(version.model, version.version), version.stats]
        )
        version.scheduler = make_scheduler(
            version.runtime,
            version.signature,
            estimate=version.compute,
            config=version.config,
            dispatcher=self.dispatcher,
            observer=version.executions,
        )

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        self.dataplane.draining = True
        if self._signals == 1:
            log.info("received %s: draining, then exiting", signal.Signals(signum).name)
            self._stop.set()
        else:
            log.warning("received %s again: stopping now", signal.Signals(signum).name)
            logging.shutdown()
            os._exit(EXIT_FORCED)

    def request_stop(self) -> None:
        """Begin the graceful shutdown, as SIGTERM does."""
        self._on_signal(signal.SIGTERM)

    async def run(self) -> int:
        """Serve until a signal; return the process exit code."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        server_settings = self.settings.server
        sock = _bind(server_settings.host, server_settings.http_port)
        listeners: list[HttpListener | GrpcListener] = [await self._listen(self.http_app, sock)]
        host, port = sock.getsockname()[:2]
        log.info(
            "modelport %s: HTTP on http://%s:%d (TF Serving REST /v1, KServe V2 REST /v2, "
            "TorchServe /ping and /predictions)",
            __version__,
            host,
            port,
        )
        sock = _bind(server_settings.host, server_settings.grpc_port, "--grpc-port")
        listeners.append(await self._listen_grpc(sock))
        log.info(
            "gRPC on %s:%d (%s)",
            *sock.getsockname()[:2],
            ", ".join(s.name for s in self.grpc_app.services),
        )
        if self.torchserve_app is not None:
            assert server_settings.torchserve_port is not None
            sock = _bind(server_settings.host, server_settings.torchserve_port, "--torchserve-port")
            listeners.append(await self._listen(self.torchserve_app, sock))
            log.info("TorchServe inference API on http://%s:%d", *sock.getsockname()[:2])
        code = await self._start_models()
        if code == EXIT_OK:
            await self._stop.wait()
        return await self._shutdown(listeners, code)

    async def _listen_grpc(self, sock: socket.socket) -> GrpcListener:
        server_settings = self.settings.server
        listener = GrpcListener(
            self.grpc_app,
            GrpcLimits(
                max_receive_message_bytes=server_settings.grpc_max_receive_message_bytes,
                max_send_message_bytes=server_settings.grpc_max_send_message_bytes,
                keepalive_time_s=server_settings.grpc_keepalive_time_s,
                keepalive_timeout_s=server_settings.grpc_keepalive_timeout_s,
                min_ping_interval_s=server_settings.grpc_min_ping_interval_s,
            ),
        )
        await listener.start(sock)
        return listener

    async def _listen(self, app: HttpApp, sock: socket.socket) -> HttpListener:
        server_settings = self.settings.server
        listener = HttpListener(
            app,
            HttpLimits(
                max_body_bytes=server_settings.max_body_bytes,
                header_timeout_s=server_settings.header_timeout_s,
                body_timeout_s=server_settings.body_timeout_s,
                keep_alive_timeout_s=server_settings.keep_alive_timeout_s,
            ),
        )
        await listener.start(sock)
        return listener

    async def _start_models(self) -> int:
        log.info("loading models from %s", self.source.describe())
        startup = asyncio.ensure_future(self._initial_load())
        stopped = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({startup, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not startup.done():
            startup.cancel()
            return EXIT_OK
        problems = startup.result()
        if problems:
            for problem in problems:
                log.error("%s", problem)
            if self.settings.lifecycle.exit_on_error:
                log.error(
                    "exiting because a model has nothing to serve; fix it, or start with "
                    "--no-exit-on-error to serve the other models"
                )
                return EXIT_STARTUP_FAILED
        self.watcher.start()
        # Everything built so far lives as long as the process: keep it out of the garbage
        # collector's full passes, which would otherwise pause requests for longer.
        gc.freeze()
        names = self.manager.model_names()

        log.info("ready: serving %d models (%s)", len(names), ", ".join(names) or "none")
        return EXIT_OK

    async def _initial_load(self) -> list[str]:
        await self.watcher.scan(initial=True)
        await self.manager.wait_idle()
        return self.manager.finish_startup()

    async def _shutdown(self, listeners: list[HttpListener | GrpcListener], code: int) -> int:
        self.dataplane.draining = True
        drained = await self._drain()
        for listener in listeners:
            await listener.close(timeout=1.0 if drained else 0.0)
        await self.watcher.stop()
        if drained:
            await self.manager.close()
        if not drained or self.manager.loading:
            self.abandoned_work = True
        else:
            self.infer_pool.shutdown(wait=True)
        log.info("stopped")
        return code

    async def _drain(self) -> bool:
        timeout = self.settings.server.drain_timeout_s
        apps: list[HttpApp | GrpcApp] = [*self.http_apps, self.grpc_app]
        if inflight := sum(app.inflight for app in apps):
            log.info("waiting up to %g s for %d requests in flight", timeout, inflight)
        idle = await asyncio.gather(*(app.wait_idle(timeout) for app in apps))
        if all(idle):
            return True
        busy = self.manager.busy_versions()

        log.warning(
            "%d requests still in flight; exiting without waiting for them (busy: %s)",
            sum(app.inflight for app in apps),
            ", ".join(busy) or "none",
        )
        return False


def configure_logging(level: str) -> None:
    """Plain, timestamped log lines on stderr.

    JSON numbers beyond a float datatype's range become infinities, as in TF Serving and
    Triton; numpy's warning about that cast is noise in a server's log and is not shown.
    """
    warnings.filterwarnings("ignore", "overflow encountered in cast", RuntimeWarning)
    # A malformed multipart body gets 400; python-multipart's warning about it would let any
    # client write to the server log.
    logging.getLogger("python_multipart").setLevel(logging.ERROR)

    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def serve(settings: Settings) -> int:
    """Run a server in the foreground until it is stopped; return the exit code."""
    import uvloop

    configure_logging(settings.logging.level)
    try:
        server = ModelportServer(settings)
    except StartupError as exc:
        log.error("%s", exc)
        return EXIT_STARTUP_FAILED

    async def main() -> int:
        try:
            return await server.run()
        except StartupError as exc:
            log.error("%s", exc)
            return EXIT_STARTUP_FAILED

    code = uvloop.run(main())
    if server.abandoned_work:
        # Threads inside an engine call would keep the interpreter alive until they return.
        logging.shutdown()
        os._exit(code)
    return code
