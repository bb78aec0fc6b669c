"""Checkpoint -> self-describing ONNX (contract v1) and int8, checked against PyTorch."""
