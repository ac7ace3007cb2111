"""Generated protobuf code for the policy service between the node agent and enforcers; regenerate with ``generate.sh``."""
