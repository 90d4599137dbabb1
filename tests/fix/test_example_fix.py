"""The example machine of the hand-written report, repaired for real by `fix --safe` without losing a byte of work."""

from __future__ import annotations

import psutil

from healthkit.fix import Safety
from healthkit.fix.journal import read_journal
from healthkit.system.procs import probe, read_pid_file

from .conftest import fix, tree_hashes, write_fake_daemon

LIVE = ("status/training_status.json", "status/daemon_state.json", "logs", ".healthkit-fix.lock")


def test_safe_fix_repairs_the_example_machine(make_example):
    ex = make_example()
    base = ex.base
    write_fake_daemon(base)
    doc_before = (base / "CLAUDE.md").read_bytes()
    ckpts_before = tree_hashes(base / "current_model")

    run, out = fix(base, Safety.SAFE)

    # The orphan still runs: the safe fix never signals it.
    assert probe(ex.orphan_pid).alive, out
    # The stale PID file is gone or names a live daemon.
    pf = read_pid_file(base / ".daemon.pid")
    assert pf.state == "missing" or (pf.pid != ex.dead_pid and probe(pf.pid).alive), out
    assert pf.state == "ok" and "training_daemon.py" in " ".join(psutil.Process(pf.pid).cmdline())
    # The doc says eval_steps: 500 and differs from before only there.
    doc_after = (base / "CLAUDE.md").read_bytes()
    assert doc_after == doc_before.replace(b"- Eval steps: 10\n", b"- Eval steps: 500\n", 1)
    backups = list(base.glob("CLAUDE.md.bak-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == doc_before
    # No checkpoint was deleted (no limit was declared): every file unchanged.
    assert tree_hashes(base / "current_model") == ckpts_before
    # The re-audit shows those findings resolved; the rest honestly still open.
    resolved = {f.code for f in run.resolved}
    assert {"daemon.dead", "daemon.orphaned-training", "config.doc-drift"} <= resolved, out
    assert {f.code for f in run.still_open} == {
        "checkpoints.bloat",
        "checkpoints.no-retention",
        "validation.not-running",
    }
    assert not run.new, out
    assert run.exit_code == run.after.exit_code == 1
    # Plans come first, then results, then the re-audit.
    assert out.index("--- a/CLAUDE.md") < out.index("Applying:") < out.index("Re-audit:")
    assert "resolved    daemon.dead" in out
    # The journal says what was done.
    entries = read_journal(base / "logs/healthkit-fix.jsonl")
    done = {(e["fix"], e["result"]) for e in entries}
    assert {("sync-doc-value", "applied"), ("remove-stale-pid-file", "applied"), ("start-daemon", "applied")} <= done
    assert all({"ts", "fix", "action", "result", "message"} <= set(e) for e in entries)

    # A second run right after the first changes nothing.
    snapshot = tree_hashes(base, skip=LIVE)
    journal_before = (base / "logs/healthkit-fix.jsonl").read_bytes()
    run2, out2 = fix(base, Safety.SAFE)
    assert run2.chosen == [] and run2.outcomes == [], out2
    assert tree_hashes(base, skip=LIVE) == snapshot
    assert (base / "logs/healthkit-fix.jsonl").read_bytes() == journal_before
    assert probe(ex.orphan_pid).alive


def test_a_daemon_that_dies_at_once_is_reported_not_verified(make_example):
    """The demo's training_daemon.py is a stub: the start fails and the re-audit says so; nothing is killed."""
    ex = make_example()
    toml = ex.base / "healthkit.toml"  # declared to adopt, so it is started at once (and dies)
    toml.write_text(toml.read_text().replace("[processes]\n", "[processes]\ndaemon_adopts = true\n", 1))
    run, out = fix(ex.base, Safety.SAFE, only=("daemon",))
    outcome = {p.fix_id: o for p, o in run.outcomes}
    assert outcome["remove-stale-pid-file"].status == "applied"
    assert outcome["start-daemon"].status == "failed"
    assert "exited within" in outcome["start-daemon"].message
    assert probe(ex.orphan_pid).alive
    open_codes = {f.code for f in run.still_open} | {f.code for f in run.new}
    assert "daemon.orphaned-training" in open_codes and "daemon.not-running" in open_codes
    assert run.exit_code != 0
    failed = [
        e
        for e in read_journal(ex.base / "logs/healthkit-fix.jsonl")
        if e["fix"] == "start-daemon" and e["result"] == "failed"
    ]
    assert failed and "healthkit-daemon-start.log" in failed[0]["details"]["log"]


def test_no_daemon_command_means_cannot_start(make_example):
    ex = make_example(start_processes=False)
    toml = ex.base / "healthkit.toml"
    toml.write_text(
        "\n".join(line for line in toml.read_text().splitlines() if not line.startswith("daemon_command")) + "\n"
    )
    run, out = fix(ex.base, Safety.SAFE, only=("daemon",), dry_run=True)
    blocked = {p.fix_id: why for p, why in run.not_applied}
    assert "cannot start: no daemon_command in healthkit.toml" in blocked["start-daemon"]


def test_a_daemon_not_known_to_adopt_starts_only_after_the_orphan_ends(make_example):
    """Never a second training beside the orphan: a watcher waits for it (by PID and start time), then starts the daemon."""
    import psutil

    from healthkit.fix.fixes_daemon import START_LOG

    from ..conftest import sleeping_in_timer, wait_for

    ex = make_example()
    marker = ex.base / "daemon-started"
    (ex.base / "training_daemon.py").write_text(
        "import os, time\nopen('daemon-started', 'w').write(str(os.getpid()))\n"
        "while os.path.isdir('.'): time.sleep(0.3)\n"
    )
    run, out = fix(ex.base, Safety.SAFE, only=("daemon",))
    outcome = {p.fix_id: o for p, o in run.outcomes}
    assert outcome["remove-stale-pid-file"].status == "applied"
    start = next(o for fid, o in outcome.items() if fid in ("start-daemon", "adopt-orphan") and o.status == "applied")
    assert "starts the daemon when training PID" in start.message and "never signalling it" in out
    watcher = start.details["pid"]
    log = ex.base / "logs" / START_LOG
    assert psutil.Process(watcher).is_running()
    # The watcher is in its poll sleep: it has looked at the orphan at least once (an exec'd daemon writes the marker
    # before it sleeps, in the same PID).
    assert wait_for(lambda: "waiting for training PID" in log.read_text() and sleeping_in_timer(watcher), 30), (
        log.read_text()
    )
    assert not marker.exists() and probe(ex.orphan_pid).alive  # nothing started beside the training
    # The re-audit says so, and a second run does not schedule twice.
    from healthkit.core.api import audit

    orphan = next(f for f in audit(ex.base, record_costs=False).findings if f.code == "daemon.orphaned-training")
    assert orphan.data["scheduled_start"] and "start is scheduled" in " ".join(orphan.problem)
    run2, out2 = fix(ex.base, Safety.SAFE, only=("daemon",))
    assert not [o for _, o in run2.outcomes if o.status == "applied"], out2
    psutil.Process(ex.orphan_pid).kill()  # the training ends
    assert wait_for(lambda: marker.exists(), 20), "the daemon was not started after the training ended"
