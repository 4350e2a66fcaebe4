"""Running the models: one runner per format, and predict, the user command."""
