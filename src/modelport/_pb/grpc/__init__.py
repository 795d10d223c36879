"""Generated protocol buffer code; regenerate with scripts/gen_protos.py."""
