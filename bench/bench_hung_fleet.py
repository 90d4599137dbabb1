"""The 16-workspace fleet with one workspace's checkpoints on a hung FUSE mount (tests/hangfs.py): time to the report.

This checkout (`--workspace-deadline 10`) against a baseline checkout's interpreter (argv[1], e.g. a venv of
`git worktree add /tmp/base30 7325035`), stopped after 90 s. Needs /dev/fuse, fusermount, fusepy and libfuse2.
Usage: python bench/bench_hung_fleet.py /tmp/base30/.venv/bin/python
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.conftest import make_checkpoint, make_healthy_workspace  # noqa: E402 - from this checkout, after the path

root = Path(tempfile.mkdtemp(prefix="hk30hung-"))
src = root / "mounted"
for s in (10, 20, 30):
    make_checkpoint(src / "current_model", s)
mount = Path(tempfile.mkdtemp(prefix="hk-fuse-", dir="/tmp"))
control = root / "mode"
control.write_text("ok")
fs = subprocess.Popen([sys.executable, str(REPO / "tests" / "hangfs.py"), str(src), str(mount), str(control)])
while not os.path.ismount(mount):
    time.sleep(0.05)
paths = [make_healthy_workspace(root / f"ws{i:02d}") for i in range(15)]
hung = make_healthy_workspace(root / "ws-hung")
shutil.rmtree(hung / "current_model")
os.symlink(mount / "current_model", hung / "current_model")
paths.insert(7, hung)
control.write_text("hang")
try:
    for tag, py, extra in (("new", sys.executable, ["--workspace-deadline", "10"]), ("old", sys.argv[1], [])):
        tf = root / f"tf-{tag}" / "h.prom"
        t0 = time.perf_counter()
        p = subprocess.Popen(
            [
                py,
                "-m",
                "healthkit.console",
                "audit",
                *map(str, paths),
                "--output",
                f"{root}/out-{tag}/",
                "--textfile",
                str(tf),
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd="/",
            start_new_session=True,
        )
        try:
            _, err = p.communicate(timeout=90)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, 9)
            rc = "killed after 90 s"
            err = b""
        took = time.perf_counter() - t0
        lines = [ln for ln in tf.read_text().splitlines() if ln.startswith("healthkit_status{")] if tf.exists() else []
        print(
            f"{tag}: exit {rc}, {took:.1f} s, textfile: {len(lines)} healthkit_status lines, "
            f"{sum(ln.endswith(' 3.0') for ln in lines)} UNKNOWN"
        )
        for ln in err.decode(errors="replace").splitlines():
            if "ws-hung" in ln:
                print("   ", ln[:300])
        if tag == "new":
            import json

            latest = next((root / f"out-{tag}").glob("ws-hung-*/latest.json"))
            print("    report:", json.loads(latest.read_text())["checks"][0]["error"])
finally:
    control.write_text("ok")
    subprocess.run(["fusermount", "-uz", str(mount)])
    fs.terminate()
    fs.wait(10)
    shutil.rmtree(root, ignore_errors=True)
