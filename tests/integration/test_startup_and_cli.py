"""Start-up behaviour and every way to tell modelport what to serve: TF Serving's flags, a TF
Serving model config file, environment variables and a YAML settings file."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import StartServer
from tests.server import ServerProcess, free_port, with_grpc_port


def predict_status(server: ServerProcess, target: str) -> int:
    response = httpx.post(
        f"{server.url}/v1/models/{target}:predict", json={"instances": [[0.0] * 784] * 3}
    )
    return response.status_code


def statuses(server: ServerProcess, model: str) -> list[str]:
    body = httpx.get(f"{server.url}/v1/models/{model}").json()
    return [s["version"] for s in body.get("model_version_status", [])]


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    if args and args[0] == "serve":
        args = ("serve", *with_grpc_port(args[1:]))
    return subprocess.run(
        [sys.executable, "-m", "modelport", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# ---- TF Serving's ways of naming models ----------------------------------------------------


def test_tf_serving_single_model_flags(start_server: StartServer, example_repository: Path) -> None:
    server = start_server(
        "--model_name",
        "digits",
        "--model_base_path",
        str(example_repository / "mnist"),
        port_flag="--rest_api_port",
    )
    assert predict_status(server, "digits") == 200
    assert statuses(server, "digits") == ["2", "1"]  # mnist's config.yaml keeps the latest 2
    assert httpx.get(f"{server.url}/v1/models/mnist").status_code == 404


def test_tf_serving_model_config_file(start_server: StartServer, example_repository: Path) -> None:
    # The example from TF Serving's documentation, with a relative and an absolute base path.
    save_third = example_repository / "mnist" / "3"
    save_third.mkdir()
    (save_third / "model.onnx").write_bytes(
        (example_repository / "mnist/2/model.onnx").read_bytes()
    )
    config = example_repository / "models.config"
    config.write_text(
        "model_config_list {\n"
        '  config { name: "mnist" base_path: "mnist" model_platform: "tensorflow"\n'
        "    model_version_policy { specific { versions: 2 versions: 3 } }\n"
        '    version_labels { key: "stable" value: 2 }\n'
        '    version_labels { key: "canary" value: 3 } }\n'
        f"  config {{ name: 'tabular' base_path: '{example_repository / 'tabular'}' "
        "model_platform: 'onnxruntime_onnx' }\n"
        "}\n"
    )
    server = start_server("--model_config_file", str(config))
    assert statuses(server, "mnist") == ["3", "2"]
    assert predict_status(server, "mnist/labels/canary") == 200
    assert predict_status(server, "mnist/versions/1") == 404
    assert statuses(server, "tabular") == ["1"]


def test_model_config_file_is_polled(start_server: StartServer, example_repository: Path) -> None:
    config = example_repository / "models.config"
    config.write_text('model_config_list { config { name: "mnist" base_path: "mnist" } }')
    server = start_server(
        "--model_config_file",
        str(config),
        "--model_config_file_poll_wait_seconds",
        "0.2",
        "--poll-interval-s",
        "0.2",
    )
    assert httpx.get(f"{server.url}/v1/models/tabular").status_code == 404
    config.write_text(
        'model_config_list { config { name: "mnist" base_path: "mnist" } '
        'config { name: "tabular" base_path: "tabular" } }'
    )
    deadline = time.monotonic() + 60
    while httpx.get(f"{server.url}/v2/models/tabular/ready").status_code != 200:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.1)
    # Models the file no longer lists are unloaded, as TF Serving does.
    config.write_text('model_config_list { config { name: "tabular" base_path: "tabular" } }')
    while httpx.get(f"{server.url}/v1/models/mnist").status_code != 404:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.1)


def test_invalid_model_config_file_fails_start_up(tmp_path: Path) -> None:
    config = tmp_path / "models.config"
    config.write_text("model_config_list { config { name: 'a' base_path: '/x' } bogus: 1 }")
    result = run_cli("serve", "--model_config_file", str(config), "--http-port", str(free_port()))
    assert result.returncode == 1
    assert "not a valid TF Serving model config" in result.stderr
    assert "bogus" in result.stderr


# ---- settings from the environment and from a YAML file ------------------------------------


def test_environment_variables(start_server: StartServer, example_repository: Path) -> None:
    server = start_server(
        env={
            "MODELPORT_REPOSITORY__MODEL_REPOSITORY": str(example_repository),
            "MODELPORT_SERVER__MAX_BODY_BYTES": "5000",
        }
    )
    assert predict_status(server, "mnist") == 413  # three rows of 784 floats are over 5000 bytes


def test_yaml_settings_file_and_flag_precedence(
    start_server: StartServer, example_repository: Path, tmp_path: Path
) -> None:
    settings = tmp_path / "modelport.yaml"
    settings.write_text(
        f"repository:\n  model_repository: {example_repository}\nserver:\n  max_body_bytes: 5000\n"
    )
    from_file = start_server("--config", str(settings))
    assert predict_status(from_file, "mnist") == 413
    overridden = start_server(
        "--config",
        str(settings),
        "--max-body-bytes",
        "100000",
        env={"MODELPORT_SERVER__MAX_BODY_BYTES": "6000"},
    )
    assert predict_status(overridden, "mnist") == 200


def test_invalid_settings_exit_2_with_the_reason(tmp_path: Path) -> None:
    result = run_cli("serve", "--model-repository", str(tmp_path), "--http-port", "99999")
    assert result.returncode == 2
    assert "server.http_port" in result.stderr
    both = run_cli("serve", "--model-repository", str(tmp_path), "--model_base_path", str(tmp_path))
    assert both.returncode == 2
    assert "only one model source" in both.stderr
    missing = run_cli("serve", "--config", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr


# ---- start-up failures ---------------------------------------------------------------------


def test_no_model_source(tmp_path: Path) -> None:
    result = run_cli("serve", "--http-port", str(free_port()))
    assert result.returncode == 1
    assert "no models to serve" in result.stderr


def test_missing_repository(tmp_path: Path) -> None:
    result = run_cli("serve", "--model-repository", str(tmp_path / "nope"), "--http-port", "0")
    assert result.returncode == 1
    assert "does not exist" in result.stderr


def test_port_in_use(start_server: StartServer, example_repository: Path) -> None:
    first = start_server("--model-repository", str(example_repository))
    result = run_cli(
        "serve", "--model-repository", str(example_repository), "--http-port", str(first.port)
    )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{first.port}" in result.stderr


@pytest.fixture
def broken_repository(example_repository: Path) -> Path:
    broken = example_repository / "broken" / "1"
    broken.mkdir(parents=True)
    (broken / "model.onnx").write_bytes(b"not a model")
    return example_repository


def test_broken_model_fails_start_up_by_default(broken_repository: Path) -> None:
    result = run_cli(
        "serve", "--model-repository", str(broken_repository), "--http-port", str(free_port())
    )
    assert result.returncode == 1
    assert "model 'broken' has no available version" in result.stderr
    assert "--no-exit-on-error" in result.stderr


def test_no_exit_on_error_serves_the_others_and_is_not_ready(
    start_server: StartServer, broken_repository: Path
) -> None:
    server = start_server(
        "--model-repository", str(broken_repository), "--no-exit-on-error", ready=False
    )
    server.wait_live()
    server.wait_log("ready: serving")
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 503
    assert predict_status(server, "mnist") == 200
    relaxed = start_server(
        "--model-repository",
        str(broken_repository),
        "--no-exit-on-error",
        "--no-strict-readiness",
    )
    assert httpx.get(f"{relaxed.url}/v2/health/ready").status_code == 200


def test_gpu_providers_fall_back_to_cpu_with_a_log_line(
    start_server: StartServer, example_repository: Path
) -> None:
    (example_repository / "mnist" / "config.yaml").write_text(
        "runtime:\n"
        "  execution_providers:\n"
        "    - TensorrtExecutionProvider\n"
        "    - name: CUDAExecutionProvider\n"
        "      options: {device_id: 0}\n"
        "  intra_op_threads: 1\n"
        "  graph_optimization_level: extended\n"
    )
    server = start_server("--model-repository", str(example_repository))
    assert predict_status(server, "mnist") == 200
    log = server.log()
    for provider in ("TensorrtExecutionProvider", "CUDAExecutionProvider"):
        assert f"execution provider {provider} is not available" in log
    assert "model mnist version 2: running on CPUExecutionProvider" in log


def test_help_explains_every_command() -> None:
    top = run_cli("--help")
    assert top.returncode == 0
    assert "serve" in top.stdout
    serve = run_cli("serve", "--help")
    assert serve.returncode == 0
    for flag in (
        "--model-repository",
        "--rest_api_port",
        "--model_config_file",
        "--drain-timeout-s",
    ):
        assert flag in serve.stdout
    version = run_cli("--version")
    assert version.stdout.startswith("modelport ")
