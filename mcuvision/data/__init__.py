"""Data: sources and downloads, per-file facts, splits, expectations, the tf.data input pipeline, augmentation."""
