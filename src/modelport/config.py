"""Server settings, in sections, from command-line flags, environment variables and a YAML file.

Precedence, highest first: command-line flags, ``MODELPORT_<SECTION>__<KEY>`` environment
variables (for example ``MODELPORT_SERVER__HTTP_PORT=9000``), the YAML file given with
``--config``, then the defaults below. The YAML file has the same sections::

    server:
      http_port: 8501
    repository:
      model_repository: /models

Settings are read once, at start-up; each component receives only its own section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from modelport.model_config import format_validation_error

__all__ = [
    "LifecycleSettings",
    "LoggingSettings",
    "RepositorySettings",
    "ServerSettings",
    "Settings",
    "SettingsError",
    "load_settings",
]

Port = Annotated[int, Field(ge=0, le=65535)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    """Listeners and request handling."""

    host: str = "127.0.0.1"
    """Address the listeners bind to. Use 0.0.0.0 to accept connections from other hosts."""
    http_port: Port = 8501
    """Port of the HTTP API (TF Serving REST, KServe V2 REST and TorchServe's inference API)."""
    grpc_port: Port = 8500
    """Port of the gRPC APIs: TF Serving's PredictionService and ModelService, KServe V2's
    GRPCInferenceService, the standard health service and server reflection."""
    grpc_max_receive_message_bytes: Annotated[int, Field(ge=1024, le=2**31 - 1)] = 64 * 1024 * 1024
    """Largest gRPC request message (after decompression); bigger ones get RESOURCE_EXHAUSTED
    before they are read."""
    grpc_max_send_message_bytes: Annotated[int, Field(ge=1024, le=2**31 - 1)] = 64 * 1024 * 1024
    """Largest gRPC response message; a bigger answer ends the call with RESOURCE_EXHAUSTED."""
    grpc_keepalive_time_s: Annotated[float, Field(gt=0)] = 7200.0
    """Ping a gRPC connection after this long without traffic from the client."""
    grpc_keepalive_timeout_s: Annotated[float, Field(gt=0)] = 20.0
    """Close a gRPC connection whose client does not answer a ping within this time."""
    grpc_min_ping_interval_s: Annotated[float, Field(ge=0)] = 300.0
    """Clients may ping at most this often while the server sends nothing; after two pings
    too early the connection ends with GOAWAY too_many_pings (gRPC's own servers' rule).
    Lower it for clients configured with a short keep-alive time."""
    torchserve_port: Port | None = None
    """Port of an extra listener serving TorchServe's inference API alone (``/ping``,
    ``/predictions``), for clients that expect it on a port of its own (TorchServe's default is
    8080). The HTTP port serves that API too; ``None`` opens no extra port."""
    max_body_bytes: Annotated[int, Field(ge=1024)] = 64 * 1024 * 1024
    """Largest request body (after decompression); bigger ones get 413 before they are read."""
    header_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    """A client must send a request's headers within this time, or gets 408 and is
    disconnected (a defence against slow clients)."""
    body_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    """A client must send a request's body within this time after its headers."""
    keep_alive_timeout_s: Annotated[float, Field(gt=0)] = 75.0
    """Idle keep-alive connections are closed after this time."""
    drain_timeout_s: Annotated[float, Field(ge=0)] = 30.0
    """On SIGTERM or Ctrl-C, how long in-flight requests may take to finish before exit."""
    infer_threads: Annotated[int, Field(ge=0)] = 0
    """Worker threads running inference; 0 means two per CPU this process may use."""
    inline_compute_us: Annotated[float, Field(ge=0)] = 100.0
    """Engine calls measured to take less than this run on the event loop instead of a worker
    thread (the hand-off costs more than such a call); 0 sends every call to a worker thread."""

    @model_validator(mode="after")
    def _ports_differ(self) -> ServerSettings:
        if self.grpc_port and self.grpc_port == self.http_port:
            raise ValueError(
                f"--grpc-port {self.grpc_port} is also the HTTP port; give gRPC another port "
                "(TF Serving's default is 8500 for gRPC and 8501 for REST)"
            )
        if self.grpc_port and self.grpc_port == self.torchserve_port:
            raise ValueError(
                f"--grpc-port {self.grpc_port} is also the TorchServe port; give one another port"
            )
        if self.torchserve_port and self.torchserve_port == self.http_port:
            raise ValueError(
                f"--torchserve-port {self.torchserve_port} is also the HTTP port; give it another "
                "port, or leave it out: the HTTP port serves the TorchServe API too"
            )
        return self


class RepositorySettings(_Section):
    """Where models come from. Give exactly one of the three sources."""

    model_repository: Path | None = None
    """A folder of models: <repository>/<model>/<version>/model.onnx."""
    model_name: str | None = None
    """Single-model mode (TF Serving's --model_name): the model's name."""
    model_base_path: Path | None = None
    """Single-model mode (TF Serving's --model_base_path): the folder holding its versions."""
    model_config_file: Path | None = None
    """A TF Serving model_config_list text file."""
    model_config_file_poll_wait_seconds: Annotated[float, Field(ge=0)] = 0.0
    """How often the model config file is re-read; 0 reads it once."""
    poll_interval_s: float = 1.0
    """How often version folders are scanned for changes; 0 or less scans once, at start-up."""

    @model_validator(mode="after")
    def _one_source(self) -> RepositorySettings:
        chosen = [
            name
            for name, value in (
                ("--model-repository", self.model_repository),
                ("--model_base_path", self.model_base_path),
                ("--model_config_file", self.model_config_file),
            )
            if value is not None
        ]
        if len(chosen) > 1:
            raise ValueError(f"give only one model source, not {' and '.join(chosen)}")
        if self.model_name is not None and self.model_base_path is None:
            raise ValueError("--model_name needs --model_base_path")
        return self

    @property
    def configured(self) -> bool:
        return any(
            v is not None
            for v in (self.model_repository, self.model_base_path, self.model_config_file)
        )


class LifecycleSettings(_Section):
    """Loading models."""

    exit_on_error: bool = True
    """Exit with an error at start-up if a model has no version that loads."""
    strict_readiness: bool = True
    """Report ready only when every model present at start-up is serving."""
    load_threads: Annotated[int, Field(ge=1)] = 2
    """Models loaded at the same time."""
    load_timeout_s: Annotated[float, Field(gt=0)] = 600.0
    """A version still loading after this long is marked FAILED."""
    enable_batching: bool = False
    """TF Serving's --enable_batching: batch every model whose config.yaml does not configure
    dynamic_batching itself, with the batching parameters file (or TF Serving's defaults)."""
    batching_parameters_file: Path | None = None
    """TF Serving's --batching_parameters_file (text BatchingParameters)."""
    model_control: bool = False
    """Let clients load and unload models over the inference APIs (Triton's repository
    extension, TF Serving's HandleReloadConfigRequest). Off, those calls get 403: anyone who
    reaches the port could otherwise change what is served."""

    @model_validator(mode="after")
    def _batching_file_needs_batching(self) -> LifecycleSettings:
        if self.batching_parameters_file is not None and not self.enable_batching:
            raise ValueError("--batching_parameters_file needs --enable_batching, as in TF Serving")
        return self


class LoggingSettings(_Section):
    """Server log output."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    """Log level."""


class Settings(BaseSettings):
    """Every setting of ``modelport serve``."""

    model_config = SettingsConfigDict(
        env_prefix="MODELPORT_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    server: ServerSettings = Field(default_factory=ServerSettings)
    repository: RepositorySettings = Field(default_factory=RepositorySettings)
    lifecycle: LifecycleSettings = Field(default_factory=LifecycleSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        if settings_cls.model_config.get("yaml_file"):
            sources += (YamlConfigSettingsSource(settings_cls),)
        return sources


class SettingsError(ValueError):
    """The settings are invalid; the message says which and why."""


def load_settings(overrides: dict[str, Any], config_file: Path | None = None) -> Settings:
    """Settings from ``overrides`` (the command line), the environment and ``config_file``."""
    settings_cls: type[Settings] = Settings
    if config_file is not None:
        if not config_file.is_file():
            raise SettingsError(f"the settings file {config_file} does not exist")

        class _FromFile(Settings):
            model_config = SettingsConfigDict(**{**Settings.model_config, "yaml_file": config_file})

        settings_cls = _FromFile
    try:
        return settings_cls(**overrides)
    except ValidationError as exc:
        raise SettingsError(f"invalid settings: {format_validation_error(exc)}") from exc
