"""Generated protobuf code for the SPIFFE Workload API messages; regenerate with ``generate.sh``."""
