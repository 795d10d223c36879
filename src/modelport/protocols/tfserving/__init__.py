"""TF Serving's REST API (the gRPC API follows in its own module)."""
