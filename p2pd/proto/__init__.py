"""Protobuf modules generated from proto/ by scripts/gen_proto.sh; never edit them by hand."""
