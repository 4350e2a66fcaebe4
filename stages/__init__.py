"""One module per DVC stage: `python -m stages.<name>`. No stage imports another."""
