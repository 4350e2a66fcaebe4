"""Numbers for people: evaluation, intervals and paired tests, the model card, headline metrics, the PR report."""
