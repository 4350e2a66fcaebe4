"""Domain code shared by the pipeline stages: typed config, datasets, model, measurement."""
import os

from mcuvision import native_log

# TensorFlow's C++ log level, set once, here: every entry point imports this package before TensorFlow
# (`python -m mcuvision.<module>`; `python -m stages.<name>`, whose package imports it first; the tests'
# conftest.py). 2 hides TensorFlow's info and warning lines, which would bury the stages' own output;
# a value already in the environment wins. The lines TensorFlow logs past this setting are filtered
# from a program's stderr (native_log), never from a library user's.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if native_log.is_program_start():
    native_log.filter_stderr()
