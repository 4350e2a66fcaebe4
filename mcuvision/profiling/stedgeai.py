"""Optional vendor backend: ST Edge AI Core (`stedgeai`) analyze/generate and its network_report.json.

When a board sets `vendor_backend: stedgeai`, the profiler runs
`stedgeai generate -m MODEL --target TARGET --output OUT --workspace WS` and reads
OUT/network_report.json: `ram_size` (activations; a one-element list before tool 9.0),
`rom_size` (weights), `rom_n_macc`, and, when present, `estimated_library_ram_size` /
`estimated_library_flash_size` (runtime RAM and code flash). These are the vendor tool's own
figures, reported as such; they are not measurements on a board. Without the CLI on PATH the
option fails with a message saying so, never silently.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from mcuvision.errors import PipelineError


class VendorBackendError(PipelineError, RuntimeError):
    """The vendor backend was asked for and could not run."""


def find_cli(executable: str = "stedgeai") -> str:
    path = shutil.which(executable)
    if path is None:
        raise VendorBackendError(
            f"the board asks for vendor_backend=stedgeai but `{executable}` is not on PATH: install ST Edge AI "
            "Core (https://www.st.com/en/development-tools/stedgeai-core.html) and add its bin folder to PATH, "
            "or set vendor_backend: none")
    return path


def parse_report(path: Path) -> dict:
    if not path.is_file():
        raise VendorBackendError(f"stedgeai wrote no {path.name} in {path.parent}")
    report = json.loads(path.read_text(encoding="utf-8"))
    missing = [k for k in ("ram_size", "rom_size", "rom_n_macc") if k not in report]
    if missing:
        raise VendorBackendError(f"{path} lacks {', '.join(missing)}")
    ram = report["ram_size"]
    ram = ram[0] if isinstance(ram, list) else ram
    out = {"activation_ram_bytes": int(ram), "weights_flash_bytes": int(report["rom_size"]),
           "macc": int(report["rom_n_macc"]),
           "runtime_ram_bytes": report.get("estimated_library_ram_size"),
           "code_flash_bytes": report.get("estimated_library_flash_size"),
           "tool_version": report.get("cli_version_str") or report.get("tools_version"),
           "source": "ST Edge AI Core network_report.json (vendor tool estimate, not measured on a board)"}
    for key in ("runtime_ram_bytes", "code_flash_bytes"):
        out[key] = None if out[key] is None else int(out[key])
    return out


def run(model: Path, target: str, workdir: Path, executable: str = "stedgeai", timeout: float = 600.0) -> dict:
    cli = find_cli(executable)
    out, ws = workdir / "stedgeai_output", workdir / "stedgeai_workspace"
    out.mkdir(parents=True, exist_ok=True)
    cmd = [cli, "generate", "-m", str(Path(model).resolve()), "--target", target,
           "--output", str(out), "--workspace", str(ws)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or [""]
        raise VendorBackendError(f"`{' '.join(cmd)}` failed with status {done.returncode}: {last[0]}")
    return {"command": " ".join(cmd[1:2] + ["--target", target]), **parse_report(out / "network_report.json")}
