"""Typed views of params.yaml, one module per section (import the one you need)."""
