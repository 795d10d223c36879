"""The I/O-free core: the dataplane every protocol calls, and request validation.

Nothing in ``core`` imports a web framework, gRPC or an engine; it talks to engines only through
``runtimes.base.Runtime`` and to the lifecycle only through the ``ModelStore`` protocol.
"""
