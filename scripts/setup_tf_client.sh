#!/usr/bin/env bash
# Creates .venv-tf: a separate virtualenv with TF Serving's real Python client
# (tensorflow-serving-api: prediction_service_pb2_grpc, predict_pb2, get_model_metadata_pb2,
# model_service_pb2_grpc) on tensorflow-cpu, for the integration tests that drive
# modelport's gRPC port with it. Kept apart from .venv: TensorFlow is large (about 1.6 GB
# installed) and pins its own protobuf and numpy ranges.
#
# Versions: scripts/tf-client-requirements.txt (all pinned) + TF_SERVING_API_VERSION below.
# tensorflow-serving-api goes in with --no-deps: it requires the `tensorflow` distribution,
# and pip would install that GPU-enabled build beside tensorflow-cpu, which already provides
# the `tensorflow` module. Its real dependencies (grpcio, protobuf) are in the requirements.
# (So `pip check` in .venv-tf reports "tensorflow-serving-api requires tensorflow": expected.)
#
# Idempotent: a stamp records the recipe; when it matches, the script exits at once.
# Usage: scripts/setup_tf_client.sh [--force]     (PYTHON=python3.11 to choose the Python)
set -euo pipefail

cd "$(dirname "$0")/.."

TF_SERVING_API_VERSION=2.21.0
REQUIREMENTS=scripts/tf-client-requirements.txt
PYTHON=${PYTHON:-python3}
VENV=.venv-tf
STAMP=$VENV/.installed

RECIPE="tensorflow-serving-api=$TF_SERVING_API_VERSION $(sha256sum "$REQUIREMENTS" | cut -c1-16)"

if [[ "${1:-}" != "--force" && -x $VENV/bin/python && -f $STAMP && "$(cat "$STAMP")" == "$RECIPE" ]]; then
    exit 0
fi

echo "setup_tf_client: building $VENV ($RECIPE)"
rm -f "$STAMP"
if ! "$VENV/bin/python" -c "" 2>/dev/null; then
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
fi

"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    "tensorflow-serving-api==$TF_SERVING_API_VERSION"

# The imports the tests use, and one tensor proto, before declaring the venv ready.
TF_CPP_MIN_LOG_LEVEL=2 TF_ENABLE_ONEDNN_OPTS=0 "$VENV/bin/python" - <<'EOF'
import tensorflow as tf
from tensorflow_serving.apis import (  # noqa: F401
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

proto = tf.make_tensor_proto([[1.0, 2.0]])
assert [d.size for d in proto.tensor_shape.dim] == [1, 2], proto
request = predict_pb2.PredictRequest()
request.model_spec.name = "mnist"
request.inputs["x"].CopyFrom(proto)
print(f"setup_tf_client: tensorflow {tf.__version__} and tensorflow_serving.apis import")
EOF

echo "$RECIPE" >"$STAMP"
echo "setup_tf_client: ready: $VENV/bin/python"
