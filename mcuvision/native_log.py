"""Native log lines that TF_CPP_MIN_LOG_LEVEL does not reach, kept off a program's stderr.

TensorFlow 2.17+ logs some lines through Abseil before Abseil's logging is initialised, and Abseil
then writes every severity to stderr whatever TF_CPP_MIN_LOG_LEVEL says: on CPUs where oneDNN's
optimisations are on (AVX-512, AMX, or TF_ENABLE_ONEDNN_OPTS=1) each process that loads TensorFlow
prints "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
and "I0000 ... port.cc:153] oneDNN custom operations are on ...", so a stage's one-line error
would be the fifth line (abseil-cpp issue 1570, tensorflow issue 1258).

`filter_stderr()` puts a pipe on file descriptor 2 and forks a small process that copies it to
the real stderr, leaving out the lines below TF_CPP_MIN_LOG_LEVEL's severity that are in Abseil's
or glog's format (`I0000 00:00:1796406570.803179    2325 port.cc:153] ...`), TensorFlow Lite's
"INFO: " lines and its calibrator's "fully_quantize: ..." line, Abseil's line about InitializeLog,
and the few known-harmless error lines of KNOWN_HARMLESS. Everything else, Python's own output and
TensorFlow's real errors included, passes unchanged. A separate process, not a thread, so that the
last lines before a crash (abort, SIGKILL) still reach the terminal: the copy ends when every writer
of the pipe has gone.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import re
import select
import signal
import sys
import tempfile
import time
from dataclasses import dataclass

# Abseil / glog: severity letter, MMDD, time, thread id, file:line]
NATIVE_LINE = re.compile(rb"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^\s\]]+:\d+\] ")
SEVERITY = {b"I": 0, b"W": 1, b"E": 2, b"F": 3}  # TF_CPP_MIN_LOG_LEVEL's scale
# TensorFlow Lite's own logger (tflite/minimal_logging): "INFO: Created TensorFlow Lite XNNPACK delegate ..."
TFLITE_INFO = b"INFO: "
# TensorFlow Lite's calibrator prints one line per conversion with a representative dataset.
TFLITE_CALIBRATOR = re.compile(rb"^fully_quantize: \d+, inference_type: \d+, input_inference_type: ")
ABSL_PREAMBLE = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
# Error-severity lines that report no error: oneDNN saying it falls back to another kernel for uint8
# (the int8 model runs, and its outputs are checked against float by quantize and evaluate).
KNOWN_HARMLESS = (re.compile(rb"oneDNN supports DT_U?INT8 only on platforms with AVX-512"),)
_IDLE_FLUSH_S = 0.05  # a fragment without a line end is passed on after this long without more
_DRAIN_WAIT_S = 5.0  # at exit, how long the program waits for the filter to pass on its last lines
_filter_pid = 0  # the filter process, once started


def min_level(environ: os._Environ | dict = os.environ) -> int:
    """TF_CPP_MIN_LOG_LEVEL as an int (0 all, 1 no info, 2 no warnings, 3 no errors); 0 when unset
    or not a number, as TensorFlow reads it."""
    try:
        return int(environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def keep(line: bytes, level: int) -> bool:
    """Whether a line of stderr (bytes, its line end included or not) is shown at `level`."""
    if level <= 0:
        return True
    if line.rstrip(b"\r\n") == ABSL_PREAMBLE:
        return False
    if line.startswith(TFLITE_INFO) or TFLITE_CALIBRATOR.match(line):
        return False
    native = NATIVE_LINE.match(line)
    if native is None:
        return True
    if SEVERITY[native.group(1)] < level:
        return False
    return not any(p.search(line) for p in KNOWN_HARMLESS)


def _copy(source: int, target: int, level: int) -> None:
    """Copy `source` to `target` line by line, dropping what keep() refuses, until end of file."""
    pending = b""
    while True:
        ready, _, _ = select.select([source], [], [], _IDLE_FLUSH_S if pending else None)
        if not ready:  # a fragment (a progress bar, a prompt) waited long enough: pass it on
            os.write(target, pending)
            pending = b""
            continue
        chunk = os.read(source, 65536)
        if not chunk:
            break
        pending += chunk
        lines = re.split(rb"(?<=[\n\r])", pending)
        pending = lines.pop()
        out = b"".join(line for line in lines if keep(line, level))
        if out:
            os.write(target, out)
    if pending and keep(pending, level):
        os.write(target, pending)


def filter_stderr() -> None:
    """From now on, this process's (and its children's) file descriptor 2 goes through the filter
    described above. Does nothing where there is no fork (Windows), when stderr is closed, when
    TF_CPP_MIN_LOG_LEVEL asks for every line (0), or when called a second time. Call it before
    TensorFlow loads and before any thread starts (a fork copies only the calling thread)."""
    global _filter_pid
    level = min_level()
    if _filter_pid or level <= 0 or not hasattr(os, "fork"):
        return
    try:
        real = os.dup(2)
    except OSError:
        return
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the filter: outlives a crash of the program, ends at the pipe's end of file
        try:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)  # Ctrl-C reaches the group: drain, then go
            os.close(write_end)
            os.dup2(real, 2)
            _copy(read_end, real, level)
        finally:
            os._exit(0)
    os.close(read_end)
    sys.stderr.flush()
    os.dup2(write_end, 2)
    os.close(write_end)
    _filter_pid = pid

    def _drain() -> None:
        # The program's last lines are out before it returns: give fd 2 back, let the filter finish.
        sys.stderr.flush()
        os.dup2(real, 2)
        # A child of the program still holding the pipe would keep the filter alive: wait boundedly.
        for _ in range(int(_DRAIN_WAIT_S / _IDLE_FLUSH_S)):
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    return
            except ChildProcessError:
                return
            time.sleep(_IDLE_FLUSH_S)

    atexit.register(_drain)



@dataclass
class Held:
    """What was written to file descriptor 2 inside `held_stderr()` (bytes, once the block ends)."""
    text: bytes = b""

    def release(self) -> None:
        """Write the held bytes to stderr now (through the filter above, when it runs)."""
        sys.stderr.flush()
        if self.text:
            os.write(2, self.text)


@contextlib.contextmanager
def held_stderr():
    """Hold file descriptor 2 in a temporary file for the block: for work whose native messages
    duplicate what the caller reports itself. TensorFlow's image decoders print libjpeg's complaint
    about a bad file ("Input file read error", "Premature end of JPEG data ...") without naming it,
    before the error the caller catches and reports with the file's name. Yields a Held; the caller
    releases it when it found nothing that explains the text. If the block raises, the text is
    released first, so nothing is lost on the way to the error."""
    sys.stderr.flush()
    held, saved = Held(), os.dup(2)
    with tempfile.TemporaryFile() as buffer:
        os.dup2(buffer.fileno(), 2)
        try:
            yield held
        except BaseException:
            _restore(saved, buffer, held)
            held.release()
            raise
        _restore(saved, buffer, held)


def _restore(saved: int, buffer, held: Held) -> None:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)
    buffer.seek(0)
    held.text = buffer.read()


def is_program_start() -> bool:
    """Whether this import is the start of one of the project's programs (`python -m stages.X`,
    `python -m mcuvision.X`, a `mcuvision-*` console script), not a library import inside
    someone's notebook, test run or script, whose stderr is theirs."""
    program = sys.argv[0] if sys.argv else ""
    return (program == "-m" or os.path.basename(program).startswith("mcuvision-")) and "pytest" not in sys.modules
