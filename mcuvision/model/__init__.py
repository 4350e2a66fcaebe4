"""The model: ST EfficientNet LC v1's architecture, its custom layer, training helpers, checkpoints."""
