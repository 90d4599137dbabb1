"""Audit settings (`healthkit.toml`): every path, key name, process pattern, port and threshold.

Our trainer's layout is the default; a foreign setup (its own daemon, its own status keys)
says how it differs here instead of being reported as broken. The settings are frozen
dataclasses built by healthkit.system.schemalite (unknown keys and wrong types are refused with
the key's dotted name), not pydantic models: a cron audit cannot afford pydantic's
model-building time (see schemalite's docstring).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

from healthkit.system.records import identity_record as frozen  # an import, so mypy sees the dataclass_transform
from healthkit.system.schemalite import BuildError, build

SETTINGS_FILE = "healthkit.toml"


def Field(default: Any = dataclasses.MISSING, *, description: str = "", **bounds: float) -> Any:
    """A settings field with bounds (ge, gt, le) checked when healthkit.toml is read."""
    meta = {"description": description, **bounds}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _section(cls: type) -> Any:
    return dataclasses.field(default_factory=cls)


# Not frozen, no generated __eq__: each generated method is an exec() at import, and a cron
# audit pays for every one. Nothing mutates settings after load.
# frozen is identity_record: dataclass(eq=False), its repr shared (healthkit/system/records.py)


@frozen
class PathSettings:
    config: str = "config.json"
    config_schema: str = Field(
        "healthkit", description="'healthkit' (our training config), 'none' (foreign setups), or a JSON Schema file"
    )
    docs: list[str] = Field(["CLAUDE.md", "AGENTS.md", "README.md"])
    pid_file: str = ".daemon.pid"
    checkpoints: str = "current_model"
    checkpoints_config_key: str | None = Field(
        None,
        description="config.json key naming the checkpoint folder (e.g. current_model_dir); wins over `checkpoints`",
    )
    queue_pending: list[str] = Field(["queue/inbox"])
    queue_processing: str = "queue/processing"
    queue_done: str = "queue/done"
    queue_failed: str = "queue/failed"
    control: str = "control"
    status: str = "status/training_status.json"
    daemon_state: str = "status/daemon_state.json"
    supervisor_state: str = "status/supervisor_state.json"  # our supervisor's PID, restarts, last crash
    logs: str = "logs"
    monitoring_costs: str = "monitoring_costs.json"
    reports: str = "reports"
    journal: str = "logs/healthkit-fix.jsonl"


@frozen
class StatusKeys:
    """Key names in the status file, by what they mean (a foreign setup's `validation_loss` is our `val_loss`)."""

    state: str = "state"
    step: str = "step"
    total_steps: str = "total_steps"
    loss: str = "loss"
    val_loss: str = "val_loss"
    val_train_gap: str = "val_train_gap"
    current_file: str = "current_file"
    started_at: str = "started_at"
    updated_at: str = "updated_at"
    eta_seconds: str = "eta_seconds"
    gpu: str = "gpu"


@frozen
class ConfigKeys:
    """Key names in config.json, by the HF TrainingArguments name they mean."""

    save_total_limit: str = "save_total_limit"
    save_steps: str = "save_steps"
    save_strategy: str = "save_strategy"
    eval_steps: str = "eval_steps"
    eval_strategy: str = "eval_strategy"
    max_steps: str = "max_steps"
    num_train_epochs: str = "num_train_epochs"
    logging_steps: str = "logging_steps"
    validation_file: str = "validation_file"
    validation_split: str = "validation_split"
    base_model: str = "base_model"
    monitor_port: str = "monitor_port"


@frozen
class ProcessSettings:
    daemon: list[str] = Field(["healthkit.trainer.daemon", "trainer.daemon", "training_daemon.py"])
    training: list[str] = Field(["healthkit.trainer.train_file", "trainer.train_file", "train.py"])
    training_in_daemon: bool = Field(False, description="training runs inside the daemon process (no separate child)")
    match_workspace: bool = Field(True, description="only count processes whose cwd or argv points into the workspace")
    daemon_command: list[str] | None = Field(
        None, description="argv that starts the daemon; {base} is replaced by the workspace path"
    )
    daemon_adopts: bool = Field(
        False,
        description="the daemon_command's daemon adopts a running training instead of starting a second one; "
        "otherwise `fix --safe` starts it only once the orphaned training has ended",
    )


@frozen
class RetentionSettings:
    save_total_limit: int | None = Field(
        None,
        ge=1,
        description="the limit the training code enforces when config.json does not say (a hard-coded value)",
    )


@frozen
class Thresholds:
    disk_min_free_percent: float = Field(10.0, ge=0, le=100)
    disk_min_free_bytes: int = Field(10 * 1024**3, ge=0)
    disk_critical_free_percent: float = Field(3.0, ge=0, le=100)
    stalled_min_seconds: float = Field(900.0, gt=0)
    stalled_step_factor: float = Field(20.0, gt=0)
    overfit_min_evals: int = Field(
        3, ge=2, description="evaluations, the best and those after it, before a rise counts"
    )
    overfit_min_rise: float = Field(
        0.02,
        gt=0,
        description="relative rise of the latest eval loss over the best before it is overfitting (0.02 = 2%)",
    )
    gpu_max_temp_c: float = 85.0
    gpu_max_memory_percent: float = 95.0
    monitoring_warn_share: float = Field(0.05, gt=0)
    monitoring_critical_share: float = Field(0.10, gt=0)
    monitoring_min_train_seconds: float = Field(60.0, ge=0, description="training time before hook shares are judged")
    save_grace_seconds: float = Field(
        300.0,
        ge=0,
        description="a newest checkpoint written this recently while training runs is a save in progress "
        "(not incomplete; the one extra during rotation is not bloat)",
    )
    claim_grace_seconds: float = Field(
        120.0,
        ge=0,
        description="a queue file moved into processing this recently while the daemon runs is being started, not stuck",
    )
    checkpoint_count_without_limit: int = Field(
        10, ge=1, description="checkpoints beyond which an unlimited run is bloat"
    )
    clock_skew_seconds: float = Field(
        60.0,
        ge=0,
        description="how far another host's clock may differ from ours: the lease's margin, and how far "
        "in the future a timestamp may be before it is status.clock-skew",
    )


@frozen
class SignalSettings:
    """The training signal's thresholds (loss, gradient norm, learning rate, speed); docs/signal.md gives the reasons."""

    window_logs: int = Field(20, ge=3, description="logs in the window a spike or a gradient norm is judged against")
    warmup_fraction: float = Field(
        0.05, ge=0, le=0.5, description="share of the logs taken as warmup when the log has no learning rate to show it"
    )
    spike_sigmas: float = Field(
        5.0,
        gt=0,
        description="a spike is this many robust standard deviations (1.4826 MAD of "
        "log-loss) above the window's median ...",
    )
    spike_min_ratio: float = Field(1.5, gt=1, description="... and at least this many times that median")
    spike_recover_logs: int = Field(
        10, ge=2, description="a jump whose median over this many logs falls back is a blip, not a spike"
    )
    divergence_factor: float = Field(
        3.0,
        gt=1,
        description="a loss this many times the starting loss is a divergence, "
        "flagged anywhere (warmup included) even if it falls back",
    )
    flat_min_logs: int = Field(10, ge=3, description="consecutive logs of one exact loss value before the loss is flat")
    grad_factor: float = Field(
        100.0, gt=1, description="a gradient norm this many times its running median is an explosion"
    )
    grad_min_logs: int = Field(
        2,
        ge=1,
        description="consecutive logs above grad_factor (or one followed by a non-finite "
        "norm) before it counts: a single blip does not",
    )
    lr_zero_min_logs: int = Field(
        5, ge=1, description="newest consecutive logs with a learning rate of 0 before it counts"
    )
    lr_zero_min_share_left: float = Field(
        0.10,
        gt=0,
        le=1,
        description="share of max_steps still to run when the learning rate reached 0 before it counts "
        "(a schedule that ends at 0 at max_steps leaves none)",
    )
    slowdown_factor: float = Field(
        0.5, gt=0, le=0.99, description="steps per hour under this share of the run's median are slow"
    )
    slowdown_min_intervals: int = Field(5, ge=2, description="timed intervals before speed is judged at all")
    slowdown_min_slow: int = Field(2, ge=1, description="consecutive slow intervals before it is a slowdown")
    slowdown_min_interval_seconds: float = Field(
        30.0, ge=0, description="timed points closer than this are merged into one interval (timer noise)"
    )


@frozen
class MonitorSettings:
    host: str = "127.0.0.1"
    ports: list[int] | None = Field(None, description="HTTP ports to probe; default: config's monitor_port, else 8080")
    path: str = Field("/health", description="the path each HTTP port is asked for (GET); 2xx or 3xx is up")
    tcp_ports: list[int] = Field([], description="plain TCP ports: up when they accept a connection (no HTTP)")
    timeout_seconds: float = Field(1.0, gt=0, description="per probe: connecting and, for HTTP, the answer")


@frozen
class CheckSettings:
    select: list[str] = Field([])
    ignore: list[str] = Field([])
    timeout_seconds: float = Field(10.0, gt=0)
    plugins: list[str] = Field([])


@frozen
class AuditSettings:
    record_cost: bool = Field(
        False,
        description="append each audit's own per-check cost to monitoring_costs.json (writes into the workspace; "
        "`healthkit init` turns it on for our trainer's workspaces). Off: an audit writes nothing in the audited tree",
    )


@frozen
class RunSettings:
    format: str | None = Field(
        None,
        description="the run's on-disk format (a `healthkit.formats` entry point: hf, lightning, accelerate); "
        "default: recognised from the checkpoint folder",
    )
    config_required: bool = Field(
        False, description="a missing config.json is a finding (it always is for healthkit's trainer's workspaces)"
    )


@frozen
class HealSettings:
    """Flap protection for the scheduled job's heals (`healthkit fix --safe --scheduled`); docs/unattended.md says why."""

    max_attempts: int = Field(
        3,
        ge=1,
        description="heals of the same finding within window_seconds, each followed by the finding coming back, "
        "before scheduled runs give up on it (systemd's StartLimitBurst is 5 in 10 s; a cron heal is minutes apart)",
    )
    window_seconds: float = Field(3600.0, gt=0, description="attempts older than this no longer count")
    backoff_seconds: float | None = Field(
        None, gt=0, description="the wait after the first heal, doubling after each one; default: one schedule interval"
    )


@frozen
class DaemonSettings:
    """How our trainer's daemon holds the workspace (docs/cluster.md)."""

    lease_seconds: float = Field(
        180.0,
        gt=0,
        description="the daemon's lease length: it renews `.daemon.lease` six times per lease, and stops "
        "training when it could not renew for this long minus [thresholds] clock_skew_seconds (another host may take the "
        "workspace once the lease and the margin have passed)",
    )
    scheduler: Literal["none", "slurm"] = Field(
        "none",
        description="'slurm': `healthkit daemon start` submits the daemon as a batch job (sbatch; see [slurm]); "
        "'none': it starts here",
    )


@frozen
class SlurmSettings:
    """The batch job `healthkit daemon start` submits when `[daemon] scheduler = "slurm"` (docs/cluster.md)."""

    partition: str | None = Field(None, description="sbatch --partition; default: the cluster's default partition")
    time: str | None = Field(None, description="sbatch --time (e.g. '04:00:00'); default: the partition's limit")
    signal_lead_seconds: int = Field(
        300,
        ge=1,
        description="seconds before the time limit that Slurm sends USR1 to the batch shell (--signal=B:USR1@N):"
        " the daemon has the training save at its next step boundary, then requeues the job",
    )
    sbatch_args: list[str] = Field([], description="more sbatch options, one argument each (e.g. ['--gres=gpu:1'])")


@frozen
class NotifySettings:
    """Where the scheduled job tells a person (Apprise URLs) and when."""

    urls: list[str] = Field(
        [],
        description="Apprise URLs; HEALTHKIT_NOTIFY_URLS (whitespace-separated) adds to them. "
        "They carry tokens: keep this file private, or use the environment",
    )
    level: Literal["critical", "warning", "info"] = Field(
        "warning", description="lowest severity of a new finding that sends a message: critical, warning or info"
    )
    repeat_seconds: float = Field(14400.0, gt=0, description="a CRITICAL still open is told again after this long")
    timeout_seconds: float = Field(10.0, gt=0, description="the most all sends of one run may take together")


@frozen
class Settings:
    paths: PathSettings = _section(PathSettings)
    status_keys: StatusKeys = _section(StatusKeys)
    config_keys: ConfigKeys = _section(ConfigKeys)
    processes: ProcessSettings = _section(ProcessSettings)
    retention: RetentionSettings = _section(RetentionSettings)
    thresholds: Thresholds = _section(Thresholds)
    signal: SignalSettings = _section(SignalSettings)
    monitor: MonitorSettings = _section(MonitorSettings)
    checks: CheckSettings = _section(CheckSettings)
    audit: AuditSettings = _section(AuditSettings)
    heal: HealSettings = _section(HealSettings)
    notify: NotifySettings = _section(NotifySettings)
    run: RunSettings = _section(RunSettings)
    daemon: DaemonSettings = _section(DaemonSettings)
    slurm: SlurmSettings = _section(SlurmSettings)

    # Dotted names healthkit.toml states ("paths.checkpoints"): detection never overrides those.
    # Type comments, not annotations: per-object attributes that are not dataclass fields (a ClassVar
    # annotation would forbid setting them on the object, which load() and detection do).
    explicit = frozenset()  # type: frozenset[str]
    # What healthkit.core.detect guessed for the rest (None: detection has not run on this object).
    inferred = None  # type: tuple[Any, ...] | None


class SettingsError(Exception):
    """healthkit.toml exists but cannot be used; the message names the file and the bad key."""


def reports_folder(base: Path, settings: Settings | None = None) -> Path:
    """Where this workspace's reports live: `[paths] reports` of healthkit.toml (default `reports/`), resolved like
    every path setting. `healthkit schedule` writes there and the daemon's live page reads there: one answer.
    Raises SettingsError when healthkit.toml cannot be read."""
    if settings is None:
        settings, _ = load_settings(base)
    return resolve_path(base, settings.paths.reports)


def resolve_path(base: Path, rel: str) -> Path:
    """A path setting as a path: `{base}` and `~` expanded, relative to the workspace unless absolute."""
    p = Path(rel.replace("{base}", str(base))).expanduser()
    return p if p.is_absolute() else base / p


def load_settings(base: Path) -> tuple[Settings, Path | None]:
    from healthkit.system.fsutil import CAP_SETTINGS, ReadProblem, read_bytes

    path = base / SETTINGS_FILE
    try:
        raw = read_bytes(path, CAP_SETTINGS)  # a FIFO never blocks, a huge file is never read whole
    except ReadProblem as exc:
        if exc.kind == "missing":
            return Settings(), None
        raise SettingsError(f"{path}: cannot be read: {exc.message}") from None
    import tomllib  # only when the workspace has a healthkit.toml

    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise SettingsError(f"{path}: is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: invalid TOML: {exc}") from None
    except RecursionError:
        ReadProblem("too-deep", path, f"{path} is nested too deep to parse")
        raise SettingsError(f"{path}: nested too deep to parse (arrays or tables within each other)") from None
    try:
        settings = build(Settings, data)
    except BuildError as exc:
        raise SettingsError("\n".join([f"{path}: invalid settings:"] + [f"  {p}" for p in exc.problems])) from None
    settings.explicit = explicit_keys(data)
    return settings, path


def explicit_keys(data: dict[str, Any]) -> frozenset[str]:
    """The dotted settings a parsed healthkit.toml states (a whole section counts for each of its keys)."""
    return frozenset(f"{section}.{key}" for section, table in data.items() if isinstance(table, dict) for key in table)
