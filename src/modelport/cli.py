"""The ``modelport`` command line.

Flags override environment variables (``MODELPORT_<SECTION>__<KEY>``), which override the YAML
settings file given with ``--config``. TF Serving's flag names are accepted where they mean the
same thing, so an existing ``tensorflow_model_server`` command line works after renaming the
program.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from modelport import __version__

__all__ = ["app", "main"]

app = typer.Typer(
    name="modelport",
    help=(
        "modelport serves a versioned model repository over TF Serving's, KServe V2's and "
        "TorchServe's APIs, with hot reload that never drops a request."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"modelport {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_print_version, is_eager=True
        ),
    ] = False,
) -> None:
    """modelport: one model server for the clients you already use."""


SOURCES = "Model sources (give one)"
LISTEN = "Listeners"
LIFECYCLE = "Lifecycle"


@app.command()
def serve(
    model_repository: Annotated[
        Path | None,
        typer.Option(
            "--model-repository",
            "--model_repository",
            help="Folder of models laid out as <model>/<version>/model.onnx.",
            rich_help_panel=SOURCES,
        ),
    ] = None,
    model_name: Annotated[
        str | None,
        typer.Option(
            "--model_name",
            "--model-name",
            help="Single-model mode: the name to serve the model under (default: 'default').",
            rich_help_panel=SOURCES,
        ),
    ] = None,
    model_base_path: Annotated[
        Path | None,
        typer.Option(
            "--model_base_path",
            "--model-base-path",
            help="Single-model mode: the folder holding the model's version folders.",
            rich_help_panel=SOURCES,
        ),
    ] = None,
    model_config_file: Annotated[
        Path | None,
        typer.Option(
            "--model_config_file",
            "--model-config-file",
            help="A TF Serving model_config_list text file naming the models to serve.",
            rich_help_panel=SOURCES,
        ),
    ] = None,
    model_config_file_poll_wait_seconds: Annotated[
        float | None,
        typer.Option(
            "--model_config_file_poll_wait_seconds",
            "--model-config-file-poll-wait-seconds",
            help="Re-read the model config file this often; 0 reads it once. Default: 0.",
            rich_help_panel=SOURCES,
        ),
    ] = None,
    poll_interval_s: Annotated[
        float | None,
        typer.Option(
            "--poll-interval-s",
            "--file_system_poll_wait_seconds",
            help="Scan version folders for changes this often; 0 scans once. Default: 1.0.",
            rich_help_panel=SOURCES,
        ),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(
            help="Address to bind; 0.0.0.0 accepts other hosts. Default: 127.0.0.1.",
            rich_help_panel=LISTEN,
        ),
    ] = None,
    http_port: Annotated[
        int | None,
        typer.Option(
            "--http-port",
            "--rest_api_port",
            help="HTTP port for TF Serving REST (/v1), KServe V2 REST (/v2) and TorchServe "
            "(/ping, /predictions). Default: 8501.",
            rich_help_panel=LISTEN,
        ),
    ] = None,
    grpc_port: Annotated[
        int | None,
        typer.Option(
            "--grpc-port",
            "--port",
            help="gRPC port: TF Serving's and KServe V2's gRPC services, health, reflection. "
            "Default: 8500.",
            rich_help_panel=LISTEN,
        ),
    ] = None,
    grpc_max_receive_message_bytes: Annotated[
        int | None,
        typer.Option(
            help="Largest gRPC request message; bigger ones get RESOURCE_EXHAUSTED. "
            "Default: 64 MiB.",
            rich_help_panel=LISTEN,
        ),
    ] = None,
    grpc_max_send_message_bytes: Annotated[
        int | None,
        typer.Option(
            help="Largest gRPC response message. Default: 64 MiB.", rich_help_panel=LISTEN
        ),
    ] = None,
    grpc_keepalive_time_s: Annotated[
        float | None,
        typer.Option(
            help="Ping a gRPC client after this long without traffic. Default: 7200.",
            rich_help_panel=LISTEN,
        ),
    ] = None,
    grpc_keepalive_timeout_s: Annotated[
        float | None,
        typer.Option(
            help="Close a gRPC connection whose client misses a ping this long. Default: 20.",
            rich_help_panel=LISTEN,
        ),
    ] = None,
    grpc_min_ping_interval_s: Annotated[
        float | None,
        typer.Option(
            help="Shortest interval between a gRPC client's pings while nothing is sent; "
            "faster pingers get GOAWAY too_many_pings. Default: 300.",
            rich_help_panel=LISTEN,
        ),
    ] = None,
    torchserve_port: Annotated[
        int | None,
        typer.Option(
            "--torchserve-port",
            help="Also serve TorchServe's inference API (/ping, /predictions) alone on this port "
            "(TorchServe's default: 8080). The HTTP port serves it too. Default: none.",
            rich_help_panel=LISTEN,
        ),
    ] = None,
    max_body_bytes: Annotated[
        int | None,
        typer.Option(
            help="Largest request body; larger ones get 413. Default: 64 MiB.",
            rich_help_panel=LISTEN,
        ),
    ] = None,
    drain_timeout_s: Annotated[
        float | None,
        typer.Option(
            help="On SIGTERM, how long in-flight requests may take to finish. Default: 30.",
            rich_help_panel=LISTEN,
        ),
    ] = None,
    infer_threads: Annotated[
        int | None,
        typer.Option(
            help="Inference worker threads; 0 = two per CPU. Default: 0.", rich_help_panel=LISTEN
        ),
    ] = None,
    header_timeout_s: Annotated[
        float | None,
        typer.Option(
            help="Clients must send a request's headers within this time, else 408. Default: 10.",
            rich_help_panel=LISTEN,
        ),
    ] = None,
    body_timeout_s: Annotated[
        float | None,
        typer.Option(
            help="Clients must send a request's body within this time, else 408. Default: 30.",
            rich_help_panel=LISTEN,
        ),
    ] = None,
    keep_alive_timeout_s: Annotated[
        float | None,
        typer.Option(
            help="Close idle keep-alive connections after this time. Default: 75.",
            rich_help_panel=LISTEN,
        ),
    ] = None,
    inline_compute_us: Annotated[
        float | None,
        typer.Option(
            help="Engine calls measured below this many microseconds run on the event loop "
            "instead of a worker thread; 0 = always a thread. Default: 100.",
            rich_help_panel=LISTEN,
        ),
    ] = None,
    exit_on_error: Annotated[
        bool | None,
        typer.Option(
            "--exit-on-error/--no-exit-on-error",
            help="Exit at start-up if a model has no version that loads. Default: exit.",
            rich_help_panel=LIFECYCLE,
        ),
    ] = None,
    strict_readiness: Annotated[
        bool | None,
        typer.Option(
            "--strict-readiness/--no-strict-readiness",
            help="Ready only when every model present at start-up serves. Default: strict.",
            rich_help_panel=LIFECYCLE,
        ),
    ] = None,
    load_threads: Annotated[
        int | None,
        typer.Option(help="Models loaded at the same time. Default: 2.", rich_help_panel=LIFECYCLE),
    ] = None,
    load_timeout_s: Annotated[
        float | None,
        typer.Option(
            help="Mark a version FAILED if loading takes longer. Default: 600.",
            rich_help_panel=LIFECYCLE,
        ),
    ] = None,
    enable_batching: Annotated[
        bool | None,
        typer.Option(
            "--enable_batching/--no-enable_batching",
            "--enable-batching/--no-enable-batching",
            help="TF Serving's flag: batch every model whose config.yaml does not configure "
            "dynamic_batching, with --batching_parameters_file or TF Serving's defaults.",
            rich_help_panel=LIFECYCLE,
        ),
    ] = None,
    batching_parameters_file: Annotated[
        Path | None,
        typer.Option(
            "--batching_parameters_file",
            "--batching-parameters-file",
            help="TF Serving's text BatchingParameters file (needs --enable_batching).",
            rich_help_panel=LIFECYCLE,
        ),
    ] = None,
    model_control: Annotated[
        bool | None,
        typer.Option(
            "--model-control/--no-model-control",
            help="Let clients load and unload models through the inference APIs (Triton's "
            "/v2/repository calls, TF Serving's HandleReloadConfigRequest). Default: off (403).",
            rich_help_panel=LIFECYCLE,
        ),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option(help="debug, info, warning or error. Default: info."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            help="A YAML settings file (sections server, repository, lifecycle, logging)."
        ),
    ] = None,
) -> None:
    """Serve models over HTTP and gRPC until stopped with Ctrl-C or SIGTERM.

    Example: modelport serve --model-repository examples/models
    """
    from modelport.app import serve as run_server
    from modelport.config import SettingsError, load_settings

    overrides = _sections(
        server={
            "host": host,
            "http_port": http_port,
            "grpc_port": grpc_port,
            "grpc_max_receive_message_bytes": grpc_max_receive_message_bytes,
            "grpc_max_send_message_bytes": grpc_max_send_message_bytes,
            "grpc_keepalive_time_s": grpc_keepalive_time_s,
            "grpc_keepalive_timeout_s": grpc_keepalive_timeout_s,
            "grpc_min_ping_interval_s": grpc_min_ping_interval_s,
            "torchserve_port": torchserve_port,
            "max_body_bytes": max_body_bytes,
            "drain_timeout_s": drain_timeout_s,
            "infer_threads": infer_threads,
            "inline_compute_us": inline_compute_us,
            "header_timeout_s": header_timeout_s,
            "body_timeout_s": body_timeout_s,
            "keep_alive_timeout_s": keep_alive_timeout_s,
        },
        repository={
            "model_repository": model_repository,
            "model_name": model_name,
            "model_base_path": model_base_path,
            "model_config_file": model_config_file,
            "model_config_file_poll_wait_seconds": model_config_file_poll_wait_seconds,
            "poll_interval_s": poll_interval_s,
        },
        lifecycle={
            "exit_on_error": exit_on_error,
            "strict_readiness": strict_readiness,
            "load_threads": load_threads,
            "load_timeout_s": load_timeout_s,
            "enable_batching": enable_batching,
            "batching_parameters_file": batching_parameters_file,
            "model_control": model_control,
        },
        logging={"level": log_level},
    )
    try:
        settings = load_settings(overrides, config)
    except SettingsError as exc:
        typer.echo(f"modelport: {exc}", err=True)
        raise typer.Exit(2) from exc
    raise typer.Exit(run_server(settings))


BENCH_TARGET = "Target"
BENCH_INPUTS = "Inputs"
BENCH_LOAD = "Load"
BENCH_MEASURE = "Measurement"
BENCH_OUTPUT = "Output"


@app.command()
def bench(
    model: Annotated[str, typer.Argument(help="The model to load, by name.")],
    url: Annotated[
        str,
        typer.Option(help="The server's base URL.", rich_help_panel=BENCH_TARGET),
    ] = "http://127.0.0.1:8501",
    version: Annotated[
        int | None,
        typer.Option(
            "--version",
            help="Send every request to this version (default: the server's choice).",
            rich_help_panel=BENCH_TARGET,
        ),
    ] = None,
    protocol: Annotated[
        str,
        typer.Option(
            help="v2-json, v2-binary (the binary tensor extension) or tfserving.",
            rich_help_panel=BENCH_TARGET,
        ),
    ] = "v2-json",
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            "-b",
            help="Rows per request: replaces each input's leading -1. Default: 1.",
            rich_help_panel=BENCH_INPUTS,
        ),
    ] = None,
    shape: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME:D1,D2 sizes for an input's other -1 dimensions (after the batch "
            "dimension, or the whole shape). Repeat for several inputs.",
            rich_help_panel=BENCH_INPUTS,
        ),
    ] = None,
    input_data: Annotated[
        Path | None,
        typer.Option(
            help='Send these tensors instead of random data: {"inputs": {"NAME": [[...]]}}.',
            rich_help_panel=BENCH_INPUTS,
        ),
    ] = None,
    string_length: Annotated[
        int,
        typer.Option(help="Characters per random BYTES element.", rich_help_panel=BENCH_INPUTS),
    ] = 16,
    seed: Annotated[
        int, typer.Option(help="Seed of the random input data.", rich_help_panel=BENCH_INPUTS)
    ] = 0,
    concurrency: Annotated[
        str | None,
        typer.Option(
            "--concurrency",
            "-c",
            help="Requests in flight (closed loop), or a list such as 1,8,32. Default: 1.",
            rich_help_panel=BENCH_LOAD,
        ),
    ] = None,
    concurrency_range: Annotated[
        str | None,
        typer.Option(
            help="START:END[:FACTOR] sweep, such as 1:64:2 for 1, 2, 4, ... 64.",
            rich_help_panel=BENCH_LOAD,
        ),
    ] = None,
    request_rate: Annotated[
        str | None,
        typer.Option(
            help="Requests/s sent on schedule whatever the answers (open loop); a list "
            "such as 500,1000 sweeps.",
            rich_help_panel=BENCH_LOAD,
        ),
    ] = None,
    request_distribution: Annotated[
        str,
        typer.Option(
            help="Spacing of --request-rate requests: constant or poisson.",
            rich_help_panel=BENCH_LOAD,
        ),
    ] = "constant",
    max_connections: Annotated[
        int,
        typer.Option(
            help="With --request-rate, the most connections to open.", rich_help_panel=BENCH_LOAD
        ),
    ] = 256,
    processes: Annotated[
        int,
        typer.Option(
            "--processes",
            "-p",
            help="Client processes sharing the connections or the rate.",
            rich_help_panel=BENCH_LOAD,
        ),
    ] = 1,
    duration: Annotated[
        float,
        typer.Option(help="Seconds measured per step.", rich_help_panel=BENCH_MEASURE),
    ] = 10.0,
    warmup: Annotated[
        float,
        typer.Option(
            help="Seconds of load before each step's measurement.", rich_help_panel=BENCH_MEASURE
        ),
    ] = 2.0,
    timeout: Annotated[
        float,
        typer.Option(
            help="Seconds a request may take before it fails.", rich_help_panel=BENCH_MEASURE
        ),
    ] = 10.0,
    check: Annotated[
        int,
        typer.Option(
            help="Parse and check one answer in N; 0 checks only the status (200).",
            rich_help_panel=BENCH_MEASURE,
        ),
    ] = 0,
    json_path: Annotated[
        Path | None,
        typer.Option("--json", help="Write the results as JSON.", rich_help_panel=BENCH_OUTPUT),
    ] = None,
    csv_path: Annotated[
        Path | None,
        typer.Option("--csv", help="Write the results as CSV.", rich_help_panel=BENCH_OUTPUT),
    ] = None,
    plot_path: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            help="Draw latency and throughput to this PNG (needs matplotlib: "
            "pip install 'modelport\\[bench]').",
            rich_help_panel=BENCH_OUTPUT,
        ),
    ] = None,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="No progress display.", rich_help_panel=BENCH_OUTPUT),
    ] = False,
) -> None:
    """Measure a running server's throughput and latency, like Triton's perf_analyzer.

    Exit code: 0 if every request succeeded, 1 if any failed or the server could not be
    measured, 2 for a wrong command line.

    Example: modelport bench mnist --protocol v2-binary --concurrency 1,8,32
    """
    from modelport.bench import BenchError, make_settings, run_bench

    try:
        settings = make_settings(
            model,
            url=url,
            version=version,
            protocol=protocol,
            concurrency=concurrency,
            concurrency_range=concurrency_range,
            request_rate=request_rate,
            batch_size=batch_size,
            shapes=shape,
            input_data=input_data,
            string_length=string_length,
            seed=seed,
            duration_s=duration,
            warmup_s=warmup,
            processes=processes,
            max_connections=max_connections,
            timeout_s=timeout,
            check_every=check,
            distribution=request_distribution,
            quiet=quiet,
            json_path=json_path,
            csv_path=csv_path,
            plot_path=plot_path,
        )
    except BenchError as exc:
        typer.echo(f"modelport bench: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from exc
    raise typer.Exit(run_bench(settings))


CONVERT_OUTPUT = "Output"
CONVERT_SAMPLES = "Parity samples"
CONVERT_GATE = "Parity gate"

OutputOption = Annotated[
    Path,
    typer.Option(
        "--output",
        "-o",
        help="Folder to write model.onnx and report.json to, such as a repository version "
        "folder (models/NAME/3). Built beside it and moved into place only if the gate passes.",
        rich_help_panel=CONVERT_OUTPUT,
    ),
]
ForceOption = Annotated[
    bool,
    typer.Option(
        "--force", help="Replace a non-empty output folder.", rich_help_panel=CONVERT_OUTPUT
    ),
]
ReportFileOption = Annotated[
    Path | None,
    typer.Option(
        help="Also write the report to this file, whether the gate passes or not.",
        rich_help_panel=CONVERT_OUTPUT,
    ),
]
QuietOption = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="No progress display.", rich_help_panel=CONVERT_OUTPUT),
]
SampleOption = Annotated[
    Path | None,
    typer.Option(
        help="Inputs to compare on: a .npy (one input) or .npz (arrays named after the inputs). "
        "Default: seeded random inputs.",
        rich_help_panel=CONVERT_SAMPLES,
    ),
]
InputShapeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--input-shape",
        help="[NAME=]D1,D2,...[:DTYPE] of an input for random samples, such as 4,16 or "
        "ids=4,32:int64; repeat per input. PyTorch sources need it (or --sample).",
        rich_help_panel=CONVERT_SAMPLES,
    ),
]
BatchSizeOption = Annotated[
    int,
    typer.Option(
        min=1,
        help="Rows of random samples (a dynamic first dimension).",
        rich_help_panel=CONVERT_SAMPLES,
    ),
]
SeedOption = Annotated[
    int, typer.Option(help="Seed of the random samples.", rich_help_panel=CONVERT_SAMPLES)
]
AtolOption = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        help="Absolute tolerance (default per step: see docs/conversion.md).",
        rich_help_panel=CONVERT_GATE,
    ),
]
RtolOption = Annotated[
    float | None,
    typer.Option(
        min=0.0, help="Relative tolerance (default per step).", rich_help_panel=CONVERT_GATE
    ),
]
AgreementOption = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        max=1.0,
        help="Share of rows whose top class must agree, for classifier outputs (default per step).",
        rich_help_panel=CONVERT_GATE,
    ),
]
CosineOption = Annotated[
    float | None,
    typer.Option(
        min=-1.0,
        max=1.0,
        help="Judge float outputs with rows (embeddings) by each row's cosine similarity with "
        "the source's, which must reach this (e.g. 0.99), instead of by element errors.",
        rich_help_panel=CONVERT_GATE,
    ),
]
LatencyRunsOption = Annotated[
    int,
    typer.Option(
        min=0,
        help="Timed runs of each model; the median is reported. 0 skips timing.",
        rich_help_panel=CONVERT_GATE,
    ),
]


def _gate_command(
    command: str,
    step: str,
    make_step: Callable[[], Any],
    *,
    output: Path,
    force: bool,
    sample: Path | None,
    input_shape: list[str] | None,
    batch_size: int,
    seed: int,
    atol: float | None,
    rtol: float | None,
    min_agreement: float | None,
    min_cosine: float | None,
    latency_runs: int,
    quiet: bool,
    report_file: Path | None,
) -> None:
    """Run a conversion step through the parity gate and exit with its code."""
    import sys

    from rich.console import Console

    from modelport.convert import ConversionError, GateOptions, run_gate, tolerance_for

    options = GateOptions(
        output=output,
        force=force,
        sample=sample,
        input_shapes=tuple(input_shape or ()),
        batch_size=batch_size,
        seed=seed,
        latency_runs=latency_runs,
        quiet=quiet,
        command=("modelport", *sys.argv[1:]),
        report_file=report_file,
    )
    try:
        builder = make_step()
        code = run_gate(
            step,
            builder,
            tolerance_for(step.rpartition(" ")[2], atol, rtol, min_agreement, min_cosine),
            options,
            console=_table_console(),
            progress_console=Console(stderr=True),
        )
    except ConversionError as exc:
        typer.echo(f"modelport {command}: {exc.message}", err=True)
        raise typer.Exit(exc.exit_code) from exc
    except OSError as exc:
        typer.echo(f"modelport {command}: {exc}", err=True)
        raise typer.Exit(3) from exc
    raise typer.Exit(code)


def _table_console() -> Any:
    """Standard output; wide enough for the tables when it is a file or a pipe."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=160)


@app.command()
def convert(
    source: Annotated[
        str,
        typer.Argument(
            help="A TorchScript file (.pt), FILE.py:ClassName, a SavedModel folder, or a "
            "scikit-learn/XGBoost/LightGBM model file."
        ),
    ],
    output: OutputOption,
    weights: Annotated[
        Path | None,
        typer.Option(
            help="FILE.py:ClassName: a state dict to load (torch.save(model.state_dict())), "
            "read with torch.load(weights_only=True)."
        ),
    ] = None,
    init_args: Annotated[
        str | None,
        typer.Option(help='FILE.py:ClassName: constructor arguments as JSON, e.g. {"width": 8}.'),
    ] = None,
    opset: Annotated[
        int | None, typer.Option(min=7, help="ONNX opset (default: the exporter's).")
    ] = None,
    signature: Annotated[
        str, typer.Option(help="SavedModel: the signature to convert.")
    ] = "serving_default",
    allow_unsafe_pickle: Annotated[
        bool,
        typer.Option(
            "--allow-unsafe-pickle",
            help="Load pickle/joblib model files, which run any code they hold. Trusted files "
            "only.",
        ),
    ] = False,
    sample: SampleOption = None,
    input_shape: InputShapeOption = None,
    batch_size: BatchSizeOption = 16,
    seed: SeedOption = 0,
    atol: AtolOption = None,
    rtol: RtolOption = None,
    min_agreement: AgreementOption = None,
    min_cosine: CosineOption = None,
    latency_runs: LatencyRunsOption = 20,
    force: ForceOption = False,
    report_file: ReportFileOption = None,
    quiet: QuietOption = False,
) -> None:
    """Convert a PyTorch, TensorFlow or scikit-learn-family model to ONNX, behind a parity gate.

    Exit code: 0 within tolerance (DIR holds model.onnx and report.json), 1 refused by the gate
    (DIR untouched), 2 wrong command line or input file, 3 the conversion itself failed.

    Example: modelport convert model.pt --input-shape 1,784 --output models/mnist/3
    """

    def make_step() -> Any:
        from modelport.convert import SourceOptions, converter_for
        from modelport.convert.torch_source import parse_init_args

        return converter_for(
            source,
            SourceOptions(
                weights=weights,
                init_args=parse_init_args(init_args),
                sample=sample,
                input_shapes=tuple(input_shape or ()),
                seed=seed,
                opset=opset,
                allow_unsafe_pickle=allow_unsafe_pickle,
                signature=signature,
            ),
        )

    _gate_command(
        "convert",
        "convert",
        make_step,
        output=output,
        force=force,
        sample=sample,
        input_shape=input_shape,
        batch_size=batch_size,
        seed=seed,
        atol=atol,
        rtol=rtol,
        min_agreement=min_agreement,
        min_cosine=min_cosine,
        latency_runs=latency_runs,
        quiet=quiet,
        report_file=report_file,
    )


@app.command()
def optimize(
    model: Annotated[Path, typer.Argument(help="The ONNX model to optimize.")],
    output: OutputOption,
    level: Annotated[
        str,
        typer.Option(help="basic, extended or all; all adds layouts tuned to this machine's CPU."),
    ] = "extended",
    sample: SampleOption = None,
    input_shape: InputShapeOption = None,
    batch_size: BatchSizeOption = 16,
    seed: SeedOption = 0,
    atol: AtolOption = None,
    rtol: RtolOption = None,
    min_agreement: AgreementOption = None,
    min_cosine: CosineOption = None,
    latency_runs: LatencyRunsOption = 20,
    force: ForceOption = False,
    report_file: ReportFileOption = None,
    quiet: QuietOption = False,
) -> None:
    """Save onnxruntime's graph optimizations of an ONNX model, behind a parity gate.

    Exit codes as for convert. Example: modelport optimize model.onnx --output models/m/4
    """

    def make_step() -> Any:
        from modelport.convert import optimizer

        return optimizer(model, level)

    _gate_command(
        "optimize",
        "optimize",
        make_step,
        output=output,
        force=force,
        sample=sample,
        input_shape=input_shape,
        batch_size=batch_size,
        seed=seed,
        atol=atol,
        rtol=rtol,
        min_agreement=min_agreement,
        min_cosine=min_cosine,
        latency_runs=latency_runs,
        quiet=quiet,
        report_file=report_file,
    )


@app.command()
def quantize(
    model: Annotated[Path, typer.Argument(help="The ONNX model to quantize.")],
    output: OutputOption,
    mode: Annotated[str, typer.Option(help="dynamic-int8, static-int8 or fp16.")],
    calibration: Annotated[
        Path | None,
        typer.Option(
            help="static-int8: representative inputs (.npy/.npz, one row per example). "
            "Default: --sample, else random inputs."
        ),
    ] = None,
    keep_io_types: Annotated[
        bool,
        typer.Option(
            "--keep-io-types/--fp16-io",
            help="fp16: keep FP32 inputs and outputs (clients unchanged), or make them FP16.",
        ),
    ] = True,
    per_channel: Annotated[
        bool,
        typer.Option(
            "--per-channel/--per-tensor",
            help="int8: a weight scale per output channel (closer to fp32), or one per tensor.",
        ),
    ] = True,
    sample: SampleOption = None,
    input_shape: InputShapeOption = None,
    batch_size: BatchSizeOption = 16,
    seed: SeedOption = 0,
    atol: AtolOption = None,
    rtol: RtolOption = None,
    min_agreement: AgreementOption = None,
    min_cosine: CosineOption = None,
    latency_runs: LatencyRunsOption = 20,
    force: ForceOption = False,
    report_file: ReportFileOption = None,
    quiet: QuietOption = False,
) -> None:
    """Quantize an ONNX model to int8 or fp16, behind a parity gate.

    Exit codes as for convert. Example: modelport quantize model.onnx --mode dynamic-int8
    --output models/m/5
    """

    def make_step() -> Any:
        from modelport.convert import quantizer

        return quantizer(
            model,
            mode,
            calibration=calibration,
            sample=sample,
            keep_io_types=keep_io_types,
            per_channel=per_channel,
            batch_size=batch_size,
            seed=seed,
        )

    _gate_command(
        "quantize",
        f"quantize {mode}",
        make_step,
        output=output,
        force=force,
        sample=sample,
        input_shape=input_shape,
        batch_size=batch_size,
        seed=seed,
        atol=atol,
        rtol=rtol,
        min_agreement=min_agreement,
        min_cosine=min_cosine,
        latency_runs=latency_runs,
        quiet=quiet,
        report_file=report_file,
    )


def _sections(**sections: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Only the flags that were given, grouped by settings section."""
    result = {}
    for name, values in sections.items():
        given = {key: value for key, value in values.items() if value is not None}
        if given:
            result[name] = given
    return result


def main() -> None:
    """Entry point of the ``modelport`` command."""
    app()
