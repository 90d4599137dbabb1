"""What the `healthkit daemon|queue|init` commands do; the typer bodies in healthkit/cli.py only call these.

Each returns an exit code and writes its human output: results to stdout, notes to stderr.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Concatenate, ParamSpec

from . import control as ctl
from . import queue as q
from .layout import EXIT_CONFIG, Layout

EXIT_NOT_RUNNING = 3  # like an init script's `status`
P = ParamSpec("P")


def _out(msg: str) -> None:
    from healthkit.system.safetext import (
        visible,  # queue and checkpoint names are hostile: no escape reaches the terminal
    )

    sys.stdout.write(visible(msg.rstrip("\n")) + "\n")


def _err(msg: str) -> None:
    from healthkit.system.safetext import visible

    sys.stderr.write(visible(msg.rstrip("\n")) + "\n")


EXIT_USAGE = 64


def _workspace(path: Path) -> Layout | None:
    """The workspace's layout, or None (said on stderr) when it is not an existing folder: only init creates one."""
    lay = Layout.of(path)
    if lay.base.is_dir():
        return lay
    what = "is not a directory" if lay.base.exists() else "does not exist"
    from healthkit.system.shellcmd import command

    _err(
        f"healthkit: workspace {lay.base} {what} (create one with `{command('healthkit', 'init', path)}`); nothing was changed"
    )
    return None


def in_workspace(command: Callable[Concatenate[Layout, P], int]) -> Callable[Concatenate[Path, P], int]:
    """A command of an existing workspace: called with its PATH, run with its Layout; a PATH that is no folder is
    said once, here, and exits 64 with nothing changed (only `init` creates a workspace)."""

    @functools.wraps(command)
    def run(path: Path, /, *args: P.args, **kwargs: P.kwargs) -> int:
        lay = _workspace(path)
        return EXIT_USAGE if lay is None else command(lay, *args, **kwargs)

    return run


@in_workspace
def start(lay: Layout, supervise: bool = False, foreground: bool = False) -> int:
    from .daemon import DaemonError, daemon_argv, refuse_beside_foreign_training, start_daemon
    from .launch import child_env
    from .pidfile import running_daemon

    settings = _settings(lay)
    if settings is None:
        return EXIT_CONFIG
    if settings.daemon.scheduler == "slurm" and not foreground:
        return _submit(lay, settings, supervise)
    from healthkit.contract.trust import NoAccount, drop_to, run_as_for

    try:
        run_as = run_as_for(lay.base)  # root starts nothing as root for a user (docs/security.md)
    except NoAccount as exc:
        _err(f"healthkit: {exc}")
        return 1
    refused = _refused_before_writing(lay)
    if refused is not None:
        return refused
    if foreground:
        pid = running_daemon(lay)
        if pid:
            _err(f"a daemon already runs for {lay.base} (PID {pid})")
            return 1
        try:
            refuse_beside_foreign_training(lay)
        except DaemonError as exc:
            _err(f"healthkit: {exc}")
            return exc.exit_code
        argv = (
            [sys.executable, "-m", "healthkit.trainer.supervise", "--workspace", str(lay.base)]
            if supervise
            else daemon_argv(lay)
        )
        os.chdir(lay.base)
        env = child_env()
        if run_as is not None:
            drop_to(run_as)
            env = run_as.env(env)
        os.execve(
            sys.executable, argv, env
        )  # the process must be `-m healthkit.trainer.daemon` for the audit to know it
    try:
        pid = start_daemon(lay.base, supervise=supervise, run_as=run_as)
    except DaemonError as exc:
        _err(f"healthkit: {exc}")
        return exc.exit_code
    from .state import read_state

    st = read_state(lay.daemon_state)
    for w in st.get("warnings") or []:
        _err(f"WARNING: {w}")
    port = st.get("monitor_port")
    _out(
        f"daemon started: PID {pid}{' (supervised)' if supervise else ''}{f' as {run_as.name}' if run_as else ''}; "
        f"state {st.get('state')}"
        + (f"; adopted training PID {st.get('child_pid')}" if st.get("adopted") else "")
        + (f"; monitor http://127.0.0.1:{port}/health" if port else "")
    )
    return 0


def _refused_before_writing(lay: Layout) -> int | None:
    """Exit 78 with the reasons, before a byte is written, when the start-up checks refuse a folder no daemon of ours ran
    in and no `healthkit init` made (a Lightning or plain Trainer run): a daemon spawned there would leave status/ and
    logs/ behind, and the next audit would take the folder for a broken workspace of ours. In our own workspace the
    daemon itself refuses and records why (the audit's `daemon.not-running` says so)."""
    from healthkit.system.shellcmd import command

    from .preflight import describe, run_preflight
    from .scaffold import _config_is_ours

    if lay.daemon_state.exists() or _config_is_ours(lay.config):
        return None
    pf = run_preflight(lay)
    if pf.ok:
        return None
    _err(
        f"healthkit daemon: cannot start in {lay.base}:\n{describe(pf)}\n"
        "nothing was written (this folder is not a workspace of the healthkit trainer: "
        f"`{command('healthkit', 'init', str(lay.base))}` makes one in an empty folder; "
        f"`{command('healthkit', 'audit', str(lay.base))}` audits an existing run as it is)"
    )
    return EXIT_CONFIG


def _settings(lay: Layout):
    """healthkit.toml as the audit reads it (an unknown key is refused here as there), or None when it cannot be used."""
    from healthkit.contract.settings import SettingsError, load_settings

    try:
        return load_settings(lay.base)[0]
    except SettingsError as exc:
        _err(f"healthkit: {exc}\nnothing was started")
        return None


def _submit(lay: Layout, settings, supervise: bool) -> int:
    """`[daemon] scheduler = "slurm"`: the daemon runs as a batch job; print its id."""
    from healthkit.contract.wsid import ensure_workspace_id

    from .slurm import SlurmError, submit

    if supervise:
        _err(
            "healthkit: --supervise is refused under Slurm: Slurm's requeue is the supervisor (the job is submitted "
            "with --requeue). Nothing was submitted."
        )
        return EXIT_USAGE
    try:
        job = submit(lay, settings, ensure_workspace_id(lay.base))
    except SlurmError as exc:
        _err(f"healthkit: not submitted: {exc}")
        return 1
    from healthkit.system.shellcmd import command

    _out(f"submitted batch job {job} (the daemon for {lay.base}; `{command('squeue', '-j', job)}` shows it)")
    return 0


def _stop_slurm(lay: Layout, wait_s: float, reason: str | None) -> int:
    """A stop on request under Slurm, from any host: a pending job is cancelled; a running one is asked to stop (the
    training saves first) and its job ends with no requeue."""
    import getpass
    import time

    from healthkit.contract.wsid import read_workspace_id
    from healthkit.system.slurmq import ask, job_name, jobs_named

    wsid = read_workspace_id(lay.base)
    if wsid is None:
        _out("no daemon is running (no job was ever submitted for this workspace)")
        return 0
    jobs, ans = jobs_named(job_name(wsid))
    if jobs is None:
        _err(f"healthkit: cannot ask Slurm: {ans.why}; nothing was stopped")
        return 1
    if not jobs:
        _out("no daemon is running (no job in the queue)")
        return 0
    by = f"{getpass.getuser()} with `healthkit daemon stop` (PID {os.getpid()})"
    running = [j for j in jobs if j["state"] != "PENDING"]
    for job in jobs:
        if job["state"] == "PENDING":
            res = ask("scancel", job["job_id"])
            _out(
                f"cancelled pending job {job['job_id']}" if res.text is not None else f"job {job['job_id']}: {res.why}"
            )
    if not running:
        return 0
    ctl.request_stop(lay, by=by, reason=reason or "stopped by user")
    _err(f"asked the daemon in job(s) {', '.join(j['job_id'] for j in running)} to stop (the training saves first)...")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        left, _ = jobs_named(job_name(wsid))
        if left is not None and not [j for j in left if j["job_id"] in {r["job_id"] for r in running}]:
            _out(f"job(s) {', '.join(j['job_id'] for j in running)} ended")
            return 0
        time.sleep(1.0)
    _err(f"the job is still stopping after {wait_s:g}s; the request stays in control/stop")
    return 1


@in_workspace
def slurm_script(lay: Layout) -> int:
    """Print the batch script that runs this workspace's daemon under Slurm."""
    from healthkit.contract.wsid import ensure_workspace_id

    from .slurm import batch_script

    settings = _settings(lay)
    if settings is None:
        return EXIT_CONFIG
    sys.stdout.write(batch_script(lay, settings, ensure_workspace_id(lay.base)))
    return 0


@in_workspace
def stop(lay: Layout, wait_s: float = 120.0, reason: str | None = None) -> int:
    from .daemon import stop_daemon
    from .pidfile import running_daemon

    pid = running_daemon(lay)
    settings = _settings(lay)
    if settings is not None and settings.daemon.scheduler == "slurm" and not pid:
        return _stop_slurm(lay, wait_s, reason)
    if not pid:
        _out("no daemon is running")
        return 0
    _err(f"stopping daemon PID {pid} (the training child saves a checkpoint first)...")
    import getpass

    by = f"{getpass.getuser()} with `healthkit daemon stop` (PID {os.getpid()})"
    if stop_daemon(lay.base, wait_s, by=by, reason=reason or "stopped by user"):
        _out(f"daemon PID {pid} stopped")
        return 0
    _err(f"daemon PID {pid} is still stopping after {wait_s:g}s; the request stays in control/stop")
    return 1


@in_workspace
def status(lay: Layout, as_json: bool = False) -> int:
    from .daemon import status as get_status

    s = get_status(lay.base)
    if as_json:
        _out(json.dumps(s, indent=2, sort_keys=True, default=str))
        return 0 if s["running"] else EXIT_NOT_RUNNING
    from .statustext import status_lines

    for line in status_lines(s):
        _out(line)
    return 0 if s["running"] else EXIT_NOT_RUNNING


def _daemon_running(lay: Layout) -> bool:
    from .pidfile import running_daemon

    return bool(running_daemon(lay))


@in_workspace
def pause(lay: Layout, reason: str | None = None) -> int:
    ctl.request_pause(lay, reason)
    if _daemon_running(lay):
        _out("pause requested: training holds at its next step boundary (`healthkit daemon resume` to continue)")
    else:
        _out(
            "pause recorded; no daemon is running: the pause applies at the next start (it starts paused "
            "until `healthkit daemon resume`)"
        )
    return 0


@in_workspace
def resume(lay: Layout) -> int:
    ctl.request_resume(lay)
    _out(
        "resume requested"
        if _daemon_running(lay)
        else "resume recorded; no daemon is running: the next start is not paused"
    )
    return 0


@in_workspace
def systemd_unit(lay: Layout, user: str | None = None) -> int:
    from .supervise import systemd_unit as unit

    if user is None:  # root starts nothing as root for a user: another user's workspace gets User=<owner>
        from healthkit.contract.trust import NoAccount, run_as_for

        try:
            owner = run_as_for(lay.base)
        except NoAccount as exc:
            _err(f"healthkit: {exc}; name a user with --user")
            return 1
        user = owner.name if owner else None
    _out(unit(lay.base, user))
    return 0


def _queue_error(f: Path, exc: Exception) -> str:
    """One line that names the file once (an OSError's own text repeats the path)."""
    if isinstance(exc, FileNotFoundError):
        return f"healthkit: {f}: no such file; nothing was queued"
    if isinstance(exc, OSError):
        return f"healthkit: {f}: {exc.strerror or exc}; nothing was queued"
    return f"healthkit: {f}: {exc}"


def _config_for_checks(lay: Layout) -> tuple[object, int | None]:
    """(config, None) to check files against; (None, exit code) when config.json refuses them (said on stderr)."""
    from healthkit.contract.modelinfo import seq_length_problem

    from .preflight import ConfigProblem, load_config

    try:
        cfg = load_config(lay)
    except ConfigProblem as exc:
        _err(f"healthkit: {exc}\nnothing was queued: the daemon would not start with this config")
        return None, EXIT_CONFIG
    problem = seq_length_problem(cfg.max_seq_length, lay.resolve(cfg.base_model))
    if problem:
        _err(f"healthkit: {problem}; nothing was queued (`healthkit daemon start` refuses this config too)")
        return None, EXIT_CONFIG
    from healthkit.contract.configschema import unknown_key_lines

    for line in unknown_key_lines(dict(cfg.model_extra or {})):
        _err(f"WARNING: {line}")
    return cfg, None


@in_workspace
def queue_add(
    lay: Layout, files: list[Path], priority: int | None = None, move: bool = False, force: bool = False
) -> int:
    """Check each file whole (structure, token lengths), queue those that would train; refuse the rest (65) unless ``force``."""
    from .datacheck import check_file
    from .layout import EXIT_DATA

    missing = [f for f in files if not f.is_file()]
    for f in missing:
        _err(f"healthkit: {f}: {'not a file' if f.exists() else 'no such file'}; nothing was queued")
    if missing:
        return EXIT_USAGE
    cfg, refused = _config_for_checks(lay)
    if cfg is None:
        return refused or 1
    rc = 0
    for f in files:
        chk = check_file(lay, cfg, f)  # type: ignore[arg-type]
        for line in chk.report():
            _out(line)
        why = chk.failure()
        why = why.removeprefix(f"{f.name}: ") if why else why  # the message names the file once
        if why and not force:
            _err(
                f"healthkit: refused {f.name}: the daemon would fail it: {why}. Nothing was queued "
                "(--force queues it anyway)"
            )
            rc = EXIT_DATA
            continue
        if why:
            _err(f"WARNING: queued with --force although the daemon will fail it: {why}")
        try:
            dest = q.add(lay, f, priority=priority, move=move)
        except (OSError, ValueError) as exc:
            _err(_queue_error(f, exc))
            rc = rc or 1
            continue
        _out(f"queued {dest.relative_to(lay.base)} (priority {q.priority_of(dest.name)})")
    return rc


@in_workspace
def queue_retry(lay: Layout, name: str, force: bool = False) -> int:
    """Put a failed file back in the queue, after checking every line as `queue add` does (65 for a file the daemon
    would fail again, unless ``force``); say from which step it will resume."""
    from healthkit.contract.retry_checkpoints import kept_for, retry_point
    from healthkit.system.shellcmd import command

    from .datacheck import check_file
    from .layout import EXIT_DATA

    src = lay.failed / Path(name).name
    if src.is_file():
        cfg, refused = _config_for_checks(lay)
        if cfg is None:
            return refused or 1
        chk = check_file(lay, cfg, src)  # type: ignore[arg-type]
        for line in chk.report():
            _out(line)
        why = chk.failure()
        why = why.removeprefix(f"{src.name}: ") if why else why
        if why and not force:
            _err(
                f"healthkit: not retried: the daemon would fail {src.name} again: {why}. It stays in failed/ "
                f"(fix the file, or `{command('healthkit', 'queue', 'retry', lay.base, src.name, '--force')}` "
                "retries it anyway)"
            )
            return EXIT_DATA
        if why:
            _err(f"WARNING: retried with --force although the daemon will fail it again: {why}")
    try:
        dest = q.retry(lay, Path(name).name)
    except (q.RetryError, OSError) as exc:
        _err(f"healthkit: {exc}")
        return 1
    point = retry_point(lay.checkpoints, dest.name)
    kept = kept_for(lay.checkpoints, dest.name)
    _out(f"moved failed/{Path(name).name} back to {dest.relative_to(lay.base)} and removed its error file")
    if point:
        where = point[1].parent
        shown = (
            where.relative_to(lay.base) if where.is_relative_to(lay.base) else where
        )  # a checkpoint dir on another disk
        _out(f"it resumes from {point[1].name} (step {point[0]}; {len(kept)} checkpoint(s) of it kept in {shown}/)")
    else:
        _out("it starts from the beginning: no complete checkpoint of it was kept")
    if not _daemon_running(lay):
        _out(f"no daemon is running: `{command('healthkit', 'daemon', 'start', lay.base)}` trains it")
    return 0


@in_workspace
def queue_list(lay: Layout, as_json: bool = False) -> int:
    listing = q.listing(lay)
    if as_json:
        _out(json.dumps(listing, indent=2))
        return 0
    for folder, names in listing.items():
        _out(f"{folder} ({len(names)}):")
        for i, n in enumerate(names, 1):
            extra = ""
            if folder == "failed":
                extra = f"  -- {q.error_of(lay, n)}"
            _out(f"  {i}. {n}{extra}" if folder == "inbox" else f"  {n}{extra}")
    return 0


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


EXIT_CANTCREAT = 73  # sysexits' EX_CANTCREAT: init refuses to write here


def init(path: Path, tiny_model: bool = False, force: bool = False) -> int:
    from healthkit.system.shellcmd import command

    from .scaffold import InitRefused, init_workspace

    if tiny_model:
        from .preflight import missing_deps

        missing = [m for m in missing_deps() if m in ("torch", "transformers")] + (
            [] if _importable("tokenizers") else ["tokenizers"]
        )
        if missing:
            _err(
                f"healthkit init --tiny-model needs {', '.join(missing)}: pip install 'healthkit[trainer]' "
                "(with torch==2.13.0 first for the CPU build); nothing was written"
            )
            return 1
    try:
        written = init_workspace(path, tiny_model=tiny_model, force=force)
    except InitRefused as exc:
        hint = (
            ""
            if not Path(path).is_dir()
            else f"; to audit that run as it is, describe it with `{command('healthkit', 'init', '--detect', str(path))}` "
            "(it writes only healthkit.toml)"
        )
        _err(f"healthkit init: {exc}{hint}; nothing was written")
        return EXIT_CANTCREAT
    except OSError as exc:
        _err(f"healthkit init: cannot write {exc.filename or path}: {exc.strerror or exc}")
        return EXIT_CANTCREAT
    base = Layout.of(path).base
    for p in written:
        _out(f"wrote {p.relative_to(base) if p.is_relative_to(base) else p}")
    if not written:
        _out("nothing to do: the workspace exists (init never replaces config.json or README.md: edit them)")
    if tiny_model:
        _out(
            "try: "
            + command("healthkit", "queue", "add", path, Path(path) / "data" / "sample.jsonl")
            + " && "
            + command("healthkit", "daemon", "start", path, "--supervise")
        )
    return 0
