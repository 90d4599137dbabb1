"""`daemon start` in a folder healthkit did not make refuses before writing anything (issue 31, item 4)."""

from __future__ import annotations

import os
from pathlib import Path

from ..conftest import run_cli


def _tree(root: Path) -> list[str]:
    return sorted(str(Path(d, n).relative_to(root)) for d, ds, fs in os.walk(root) for n in ds + fs)


def test_start_on_a_lightning_run_refuses_and_leaves_nothing(tmp_path):
    base = tmp_path / "lit"
    ck = base / "lightning_logs" / "version_0" / "checkpoints"
    ck.mkdir(parents=True)
    (ck / "epoch=0-step=10.ckpt").write_bytes(b"PK\x03\x04" + b"x" * 64)
    (base / "lightning_logs" / "version_0" / "metrics.csv").write_text("epoch,step,train_loss\n0,10,1.5\n")
    before = _tree(base)
    for extra in ((), ("--supervise",)):
        r = run_cli("daemon", "start", str(base), *extra)
        assert r.returncode == 78, r
        msg = r.stderr.decode()
        assert "cannot start" in msg and "config.json" in msg and "nothing was written" in msg, msg
        assert "Traceback" not in msg
        assert _tree(base) == before  # no status/daemon_state.json, no logs/
    audit = run_cli("audit", str(base), "--format", "json")
    assert b'"config.invalid"' not in audit.stdout
