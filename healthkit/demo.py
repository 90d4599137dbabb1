"""`healthkit demo`: build the example machine of the hand-written report for real, audit it, clean up.

The workspace is a foreign setup (its own `training_daemon.py` and `train.py`, described by
healthkit.toml) with: a PID file naming a process that has exited, a real orphaned
`train.py` whose starter is gone, 26 HF-layout checkpoints and no retention, a CLAUDE.md
that disagrees with config.json, and a status file with `val_loss: null`. Tests build the
same machine through `build_example`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psutil

    from healthkit.core.report import Report

ORPHAN_SCRIPT = '''\
"""Stand-in for an orphaned training run: advances a step counter and serves a monitor port."""
import http.server, json, os, sys, threading, time
from datetime import datetime, timezone
base = os.path.dirname(os.path.abspath(__file__))
port = int(sys.argv[sys.argv.index("--monitor-port") + 1]) if "--monitor-port" in sys.argv else 0
if port:
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
        def log_message(self, *a): pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
path = os.path.join(base, "status", "training_status.json")
while True:
    try:
        with open(path) as fh:
            st = json.load(fh)
        st["updated_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        tmp = path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(st, fh, indent=2)
        os.replace(tmp, path)
    except (OSError, ValueError):
        pass
    time.sleep(2)
'''

CLAUDE_MD = """\
# Training system notes

The daemon (`training_daemon.py`) trains every file in the queue, one after another.

## Current configuration
- Eval steps: 10
- Save steps: 100
- Learning rate: 2e-4
- **LoRA:** r=128, alpha=128
- base_model is `{base_model}/`

| setting | value |
|---|---|
| max_seq_length | 2048 |
| per_device_train_batch_size | 4 |

Start it with `nohup python3 training_daemon.py --base-dir {base} &`.
"""


@dataclass
class Example:
    base: Path
    dead_pid: int
    orphan_pid: int
    monitor_port: int
    started: list[int] = field(default_factory=list)

    def cleanup(self) -> None:
        """End what the demo started, by verified PID (never by pattern): all at once, then wait for all together.

        The demo's processes are orphans (re-parented to PID 1), so a finished one can linger as a zombie until PID 1
        reaps it; psutil's wait would take that for a live process and sit out its whole timeout. A zombie has ended.
        """
        import time

        import psutil

        ending = []
        for pid in self.started:
            try:
                p = psutil.Process(pid)
                if str(self.base) in " ".join(p.cmdline()) or (p.cwd() or "").startswith(str(self.base)):
                    p.terminate()
                    ending.append(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass
        deadline = time.monotonic() + 3.0
        while ending and time.monotonic() < deadline:
            ending = [p for p in ending if _still_running(p)]
            if ending:
                time.sleep(0.02)
        for p in ending:  # did not end on TERM within 3 s
            try:
                p.kill()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass


def _still_running(p: psutil.Process) -> bool:
    import psutil

    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dead_pid() -> int:
    """A PID that really belonged to a process that has exited (and was reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _start_orphan(base: Path, argv: list[str]) -> int:
    """Start `argv` through a starter process that exits at once, so that it is re-parented: a real orphan."""
    starter = (
        "import subprocess, sys, os\n"
        "p = subprocess.Popen(sys.argv[1:], cwd=os.getcwd(), stdin=subprocess.DEVNULL, "
        "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)\n"
        "print(p.pid)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", starter, *argv], cwd=base, capture_output=True, text=True, check=True, timeout=30
    )
    return int(out.stdout.strip())


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _checkpoint(ckdir: Path, step: int, log_every: int, ckpt_bytes: int, mtime: float) -> None:
    d = ckdir / f"checkpoint-{step}"
    d.mkdir(parents=True)
    history = [
        {"step": s, "epoch": s / 4980, "loss": round(2.0 / (1 + s / 200), 4), "learning_rate": 2e-4}
        for s in range(log_every, step + 1, log_every)
    ]
    state = {
        "global_step": step,
        "max_steps": 4980,
        "epoch": step / 4980,
        "save_steps": 100,
        "eval_steps": 500,
        "logging_steps": log_every,
        "best_model_checkpoint": None,
        "best_metric": None,
        "log_history": history,
    }
    (d / "trainer_state.json").write_text(json.dumps(state, indent=2))
    (d / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 4096}))
    with open(d / "adapter_model.safetensors", "wb") as fh:
        fh.write(os.urandom(ckpt_bytes // 2))
    (d / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "r": 128, "lora_alpha": 128})
    )  # as peft saves
    with open(d / "optimizer.pt", "wb") as fh:
        fh.write(os.urandom(ckpt_bytes // 2))
    for name in ("scheduler.pt", "rng_state.pth", "training_args.bin"):
        (d / name).write_bytes(b"\0" * 1024)
    for p in [*d.iterdir(), d]:
        os.utime(p, (mtime, mtime))


def _write_state_files(base: Path, now: datetime, current_file: str) -> None:
    """The dead daemon's sticky state and log, and the orphan's status file, as the example report found them."""
    crash = (now - timedelta(hours=31)).replace(microsecond=0)
    _write(
        base / "status/daemon_state.json",
        json.dumps(
            {
                "state": "paused",
                "pid": 0,
                "paused_at": crash.isoformat(),
                "pause_reason": "Recovered from crash",
                "restarts": 1,
                "current_file": current_file,
            },
            indent=2,
        ),
    )
    os.utime(base / "status/daemon_state.json", (crash.timestamp(), crash.timestamp()))
    _write(
        base / "logs/training_daemon.log",
        f"{crash.isoformat()} INFO starting file {current_file}\n"
        f"{crash.isoformat()} ERROR daemon loop crashed: Killed\n",
    )
    os.utime(base / "logs/training_daemon.log", (crash.timestamp(), crash.timestamp()))
    _write(
        base / "status/training_status.json",
        json.dumps(
            {
                "state": "training",
                "step": 2693,
                "total_steps": 4980,
                "loss": 0.0182,
                "val_loss": None,
                "val_train_gap": None,
                "current_file": current_file,
                "started_at": (now - timedelta(hours=31)).isoformat(timespec="seconds"),
                "updated_at": now.isoformat(timespec="seconds"),
                "eta_seconds": 4 * 3600,
                "gpu": {"memory_used_mb": 716, "memory_total_mb": 24576, "temperature_c": 44},
            },
            indent=2,
        ),
    )


def build_example(
    base: Path, *, checkpoints: int = 26, ckpt_bytes: int = 256 * 1024, start_processes: bool = True
) -> Example:
    """Lay out the example machine in ``base`` (which must be empty or absent)."""
    base.mkdir(parents=True, exist_ok=True)
    base = base.resolve()
    now = datetime.now(UTC)
    base_model = str(base / "consolidated_models" / "20251119_152444")
    current_file = "lattice_autogen_20000_seed5678_converted.jsonl"
    port = _free_port()
    config = {
        "base_model": base_model,
        "current_model_dir": "current_model",
        "eval_steps": 500,
        "eval_strategy": "steps",
        "save_steps": 100,
        "save_total_limit": None,
        "logging_steps": 10,
        "learning_rate": 2e-4,
        "per_device_train_batch_size": 4,
        "max_seq_length": 2048,
        "validation_split": 0.05,
        "lora": {"r": 128, "alpha": 128},
        "monitor_port": port,
    }
    _write(base / "config.json", json.dumps(config, indent=2) + "\n")
    _write(base / "CLAUDE.md", CLAUDE_MD.format(base_model=base_model, base=base))
    _write(
        base / "healthkit.toml",
        f"""\
# This setup is not healthkit's trainer: say how it differs.
[paths]
checkpoints_config_key = "current_model_dir"
config_schema = "none"
queue_pending = ["inbox", "queue/high", "queue/normal", "queue/low"]

[processes]
daemon = ["training_daemon.py"]
training = ["train.py"]
daemon_command = ["{sys.executable}", "training_daemon.py", "--base-dir", "{{base}}"]

[monitor]
ports = [{port}]
""",
    )
    _write(base / "training_daemon.py", "# the setup's own daemon (not started by the demo)\n")
    _write(base / "train.py", ORPHAN_SCRIPT)
    for d in (
        "inbox",
        "queue/high",
        "queue/normal",
        "queue/low",
        "queue/processing",
        "queue/failed",
        "queue/recently_completed",
        "logs",
        "control",
    ):
        (base / d).mkdir(parents=True, exist_ok=True)
    _write(base / "queue/normal/next_batch_seed1234.jsonl", '{"text": "hello"}\n')
    _write(base / "queue/low/extra_seed99.jsonl", '{"text": "world"}\n')
    _write(base / "queue/processing" / current_file, '{"text": "lattice"}\n')
    _write_state_files(base, now, current_file)
    ckdir = base / "current_model"
    t0 = time.time() - 31 * 3600
    for i in range(1, checkpoints + 1):
        _checkpoint(ckdir, i * 100, 10, ckpt_bytes, t0 + i * 3600)
    dead = _dead_pid()
    _write(base / ".daemon.pid", f"{dead}\n")
    os.utime(base / ".daemon.pid", (t0, t0))
    ex = Example(base, dead, 0, port)
    if start_processes:
        ex.orphan_pid = _start_orphan(
            base,
            [sys.executable, "train.py", "--file", f"queue/processing/{current_file}", "--monitor-port", str(port)],
        )
        ex.started.append(ex.orphan_pid)
        _wait_port(port)
    return ex


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)


EXAMPLE_NAME = "example-machine"
EXAMPLE_FORMATS = ("md", "json", "html")
# Where the example machine's workspace is shown to live in reports/: the seed system's path, which means something
# to a reader, instead of the temporary folder the demo builds it in (a new one each run).
EXAMPLE_PATH = "/srv/training"
EXAMPLE_PYTHON = "/usr/bin/python3"  # likewise for the interpreter the orphan runs under (this checkout's venv)


def write_example_reports(report: Report, folder: Path) -> list[Path]:
    """`example-machine.md/.json/.html` in ``folder``: what the repository's reports/ holds for readers, with the
    workspace shown at EXAMPLE_PATH (the demo builds it in a temporary folder)."""
    from healthkit.reporting.output import utf8
    from healthkit.reporting.render import render
    from healthkit.system.fsutil import atomic_write

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in EXAMPLE_FORMATS:
        path = folder / f"{EXAMPLE_NAME}.{fmt}"
        text = render(report, fmt).replace(report.workspace, EXAMPLE_PATH).replace(sys.executable, EXAMPLE_PYTHON)
        atomic_write(path, utf8(text))
        written.append(path)
    return written


def run_demo(keep: bool = False, fmt: str = "md", ascii: bool = False, reports: Path | None = None) -> int:
    """Build, audit, print (and write the example reports into ``reports``); end the orphan and remove the folder unless ``keep``."""
    from healthkit.core.api import audit
    from healthkit.reporting.output import write_stdout
    from healthkit.reporting.render import render

    tmp = Path(tempfile.mkdtemp(prefix="healthkit-demo-"))
    ex = build_example(tmp / "training")
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        report = audit(ex.base)
        write_stdout(render(report, fmt, ascii=ascii))
        if reports is not None:
            for path in write_example_reports(report, reports):
                sys.stderr.write(f"wrote {path}\n")
        sys.stderr.write(report.summary_line() + "\n")
        if keep:
            sys.stderr.write(
                f"demo workspace kept at {ex.base}; orphan PID {ex.orphan_pid} still runs (kill {ex.orphan_pid})\n"
            )
        return report.exit_code
    finally:
        signal.signal(signal.SIGINT, old)
        if not keep:
            ex.cleanup()
            shutil.rmtree(tmp, ignore_errors=True)
