"""Domain code shared by the pipeline stages: typed config, datasets, model, measurement."""
