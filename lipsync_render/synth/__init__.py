"""Synthetic packages: true-architecture ONNX graphs (``architectures``), constructed weights, the avatar."""
