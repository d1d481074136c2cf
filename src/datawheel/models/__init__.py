"""Models as artifacts: the registry (versions, checksums, aliases), serving with hot swap, ONNX, model cards."""
