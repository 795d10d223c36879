"""The descriptor pool of modelport's protocol buffers, kept apart from the default pool.

The messages use the real package names the protocols need on the wire and in reflection
(``inference``, ``tensorflow.serving``), so registering them in protobuf's default pool would
clash with tritonclient, tensorflow or tensorflow-serving-api imported in the same process.
scripts/gen_protos.py points the generated modules at this pool instead.
"""

from google.protobuf import any_pb2, descriptor_pool, wrappers_pb2

POOL = descriptor_pool.DescriptorPool()
for _well_known in (any_pb2, wrappers_pb2):
    POOL.AddSerializedFile(_well_known.DESCRIPTOR.serialized_pb)
