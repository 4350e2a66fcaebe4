"""One module per DVC stage: `python -m stages.<name>`. No stage imports another."""
# First, before a stage's own imports (import order puts keras above mcuvision): the package sets
# TensorFlow's log level before TensorFlow loads.
import mcuvision  # noqa: F401
