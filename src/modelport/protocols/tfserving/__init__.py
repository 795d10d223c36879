"""TF Serving's REST API (``rest``) and gRPC API (``grpc``), over the shared ``codec``."""
