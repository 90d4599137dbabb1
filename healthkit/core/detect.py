"""Settings detection: what healthkit.toml leaves unset, guessed from what the workspace holds.

Most people audit a setup healthkit did not make (a plain `transformers.Trainer` script,
a home-grown daemon). Each guess is one small rule that reads a few cheap facts (one
config.json and one status file parse, a handful of stats, a bounded folder scan) and
returns an `Inferred` value with its evidence, so a wrong guess is visible in the report
and can be pinned in healthkit.toml (`healthkit init PATH --detect` writes them all).
A rule never overrides a setting the file declares, and a setting whose default already
fits the workspace is left alone (nothing to show). No rule imports anything heavy: the
audit's start-up budget holds.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from healthkit.contract.configschema import DEFAULTS_KEY, HEALTHKIT_SCHEMA_ID  # noqa: F401 - named here since 0.1
from healthkit.contract.settings import SETTINGS_FILE, Settings
from healthkit.system.lazyre import LazyPattern
from healthkit.system.records import record

# Keys only healthkit's trainer reads: a config.json carrying one was written for it.
TRAINER_MARKER_KEYS = (
    "drift_policy",
    "keep_final_models",
    "continue_from_previous",
    "max_failures",
    "hook_timeout_s",
    "status_interval_s",
)
# config.json keys that name the checkpoint folder, most specific first.
CHECKPOINT_KEYS = (
    "current_model_dir",
    "checkpoint_dir",
    "checkpoints_dir",
    "checkpoint_path",
    "save_dir",
    "output_dir",
)
STATUS_FILES = (
    "status/training_status.json",
    "training_status.json",
    "status.json",
    "status/status.json",
    "logs/training_status.json",
    "state/training_status.json",
)
STATUS_ALIASES = {
    "step": ("current_step", "global_step"),
    "val_loss": ("validation_loss", "eval_loss"),
    "updated_at": ("timestamp", "last_update"),
    "state": ("status",),
}
QUEUE_PENDING = ("queue/inbox", "inbox", "queue/pending", "queue/high", "queue/normal", "queue/low")
QUEUE_OTHER = {
    "queue_processing": ("queue/processing", "processing"),
    "queue_done": ("queue/done", "queue/recently_completed", "queue/completed", "done", "recently_completed"),
    "queue_failed": ("queue/failed", "failed"),
}
SCAN_DEPTH = 3
SCAN_MAX_ENTRIES = 20_000  # a scan that would read more gives up: detection must stay cheap
SKIP_DIRS = frozenset({"node_modules", "__pycache__", "site-packages", "venv", "wandb", "mlruns"})
_CKPT = LazyPattern(
    r"checkpoint[-_]\d+"
)  # a checkpoint folder (HF, Accelerate) is not scanned into (fullmatch: `checkpoint-60\n` is not one)
FOUND_FORMAT: dict[str, str] = {}  # folder -> the format that counted its checkpoints (for the evidence)
_TRAINS_INSIDE = LazyPattern(r"\bTrainer\s*\(|\.train\s*\(|SFTTrainer\s*\(")


@record
class Inferred:
    """One setting guessed by a rule: the dotted setting name, the value, and why."""

    setting: str
    value: Any
    evidence: str

    def to_dict(self) -> dict[str, Any]:
        return {"setting": self.setting, "value": self.value, "evidence": self.evidence}


class Probe:
    """What the rules read, each read once: the workspace, its declared settings, config.json and the status file."""

    def __init__(self, base: Path, settings: Settings, explicit: frozenset[str]):
        self.base = base
        self.settings = settings
        self.explicit = explicit
        self.config = _load_json(self.path(settings.paths.config))
        self._status: tuple[str, Any] | None = None

    def path(self, rel: str) -> Path:
        p = Path(rel.replace("{base}", str(self.base))).expanduser()
        return p if p.is_absolute() else self.base / p

    def unset(self, setting: str) -> bool:
        return setting not in self.explicit

    def isdir(self, rel: str) -> bool:
        from healthkit.system.deadline import phase

        with phase(f"looking at {rel.rstrip('/')}/"):
            return os.path.isdir(self.path(rel))

    @property
    def status(self) -> Any:
        """The parsed status file (at the path the settings say now), or None."""
        rel = self.settings.paths.status
        if self._status is None or self._status[0] != rel:
            self._status = (rel, _load_json(self.path(rel)))
        return self._status[1]


def _load_json(path: Path) -> Any:
    """A JSON file through the bounded reader (a FIFO never blocks, a deep nest never raises); None when unusable."""
    from healthkit.system.fsutil import CAP_JSON, ReadProblem, parse_json, read_bytes

    try:
        return parse_json(read_bytes(path, CAP_JSON), path)  # bytes: json reads a byte-order mark as before
    except ReadProblem:
        return None


def _q(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


# rules ----------------------------------------------------------------------------------


def rule_config_schema(p: Probe) -> list[Inferred]:
    """Validate against healthkit's schema only a config.json made for healthkit's trainer; others only parse."""
    cfg = p.config
    if not p.unset("paths.config_schema") or not isinstance(cfg, dict):
        return []
    name = p.settings.paths.config
    if cfg.get("$schema") == HEALTHKIT_SCHEMA_ID:
        return [
            Inferred(
                "paths.config_schema", "healthkit", f"{name} `$schema` is healthkit's (written by `healthkit init`)"
            )
        ]
    marks = [k for k in TRAINER_MARKER_KEYS if k in cfg]
    if marks:
        keys = ", ".join(f"`{k}`" for k in marks[:3])
        return [Inferred("paths.config_schema", "healthkit", f"{name} has the healthkit trainer's own keys {keys}")]
    return [
        Inferred(
            "paths.config_schema",
            "none",
            f"{name} is not healthkit's (no healthkit `$schema`, none of the trainer's keys such as "
            f"`drift_policy`): only checked that it parses, not validated against healthkit's schema",
        )
    ]


def _config_folder_key(p: Probe) -> tuple[str, str] | None:
    """(key, folder) of the first config key naming an existing folder, else the first naming any folder."""
    cfg = p.config if isinstance(p.config, dict) else {}
    named = [(k, cfg[k]) for k in CHECKPOINT_KEYS if isinstance(cfg.get(k), str) and cfg[k].strip()]
    for key, folder in named:
        if p.isdir(folder):
            return key, folder
    return named[0] if named else None


def _counted(entries: list[os.DirEntry]) -> tuple[int, Any]:
    """(how many checkpoints, the format) of the registered format that counts the most among these entries."""
    from healthkit.formats.registry import formats

    best: tuple[int, Any] = (0, None)
    for fmt in formats():
        n = fmt.holds_checkpoints(entries)
        if n > best[0]:
            best = (n, fmt)
    return best


def _holds_checkpoints(d: Path) -> int:
    """How many checkpoints of any registered format (healthkit.formats) folder ``d`` holds."""
    from healthkit.system.deadline import phase

    try:
        with phase(f"listing {d.name}/"), os.scandir(d) as it:
            return _counted(list(it))[0]
    except OSError:
        return 0


def scan_checkpoint_folders(base: Path, depth: int = SCAN_DEPTH) -> list[tuple[str, int]]:
    """Folders (relative, down to ``depth``) holding checkpoints of a registered format, with their counts; most first."""
    from healthkit.system.deadline import phase

    with phase(f"scanning {base.name}/ for checkpoint folders"):
        return _scan_checkpoint_folders(base, depth)


def _scan_checkpoint_folders(base: Path, depth: int) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    level, seen = [(base, "")], 0
    for d in range(depth + 1):
        nxt: list[tuple[Path, str]] = []
        for folder, rel in level:
            try:
                with os.scandir(folder) as it:
                    entries = list(it)
            except OSError:
                continue
            seen += len(entries)
            if seen > SCAN_MAX_ENTRIES:
                return sorted(found, key=lambda t: (-t[1], t[0].count("/"), t[0]))
            n, fmt = _counted(entries)
            if n:
                FOUND_FORMAT[str(folder)] = fmt.counted_as
                found.append((rel or ".", n))
            if d < depth:
                nxt += [
                    (Path(e.path), f"{rel}/{e.name}".lstrip("/"))
                    for e in entries
                    if not _CKPT.fullmatch(e.name)
                    and not e.name.startswith(".")
                    and e.name not in SKIP_DIRS
                    and e.is_dir(follow_symlinks=False)
                ]
        level = nxt
    return sorted(found, key=lambda t: (-t[1], t[0].count("/"), t[0]))


def rule_checkpoints(p: Probe) -> list[Inferred]:
    """The checkpoint folder: a config key naming it, else the default if it holds checkpoints, else a depth-3 scan."""
    if not (p.unset("paths.checkpoints") and p.unset("paths.checkpoints_config_key")):
        return []
    keyed = _config_folder_key(p)
    if keyed and p.isdir(keyed[1]):
        key, folder = keyed
        return [
            Inferred(
                "paths.checkpoints_config_key",
                key,
                f"{p.settings.paths.config} `{key}` = {_q(folder)} names the checkpoint folder",
            )
        ]
    if _holds_checkpoints(p.path(p.settings.paths.checkpoints)):
        return []
    found = scan_checkpoint_folders(p.base)
    if found:
        rel, n = found[0]
        others = "; also " + ", ".join(f"`{r}/` ({c})" for r, c in found[1:4]) if len(found) > 1 else ""
        what = FOUND_FORMAT.get(str(p.base / rel if rel != "." else p.base), "checkpoint(s)")
        return [
            Inferred(
                "paths.checkpoints", rel, f"`{rel}/` holds {n} {what} (folders scanned to depth {SCAN_DEPTH}){others}"
            )
        ]
    if keyed:
        key, folder = keyed
        return [
            Inferred(
                "paths.checkpoints_config_key",
                key,
                f"{p.settings.paths.config} `{key}` = {_q(folder)} names the checkpoint folder (not created yet)",
            )
        ]
    return []


def rule_status_file(p: Probe) -> list[Inferred]:
    """The status file: the first known file name that exists, when the default does not."""
    if not p.unset("paths.status") or os.path.isfile(p.path(p.settings.paths.status)):
        return []
    for rel in STATUS_FILES:
        if os.path.isfile(p.path(rel)):
            return [Inferred("paths.status", rel, f"`{rel}` exists (a known status file name)")]
    return []


def rule_status_keys(p: Probe) -> list[Inferred]:
    """Status keys under another name (`current_step`, `validation_loss`, `timestamp`, `status`): the evidence quotes the real key."""
    data = p.status
    if not isinstance(data, dict):
        return []
    out = []
    for canon, aliases in STATUS_ALIASES.items():
        default = getattr(p.settings.status_keys, canon)
        if not p.unset(f"status_keys.{canon}") or default in data:
            continue
        for alias in aliases:
            if alias in data:
                shown = _q(data[alias]) if not isinstance(data[alias], (dict, list)) else type(data[alias]).__name__
                out.append(
                    Inferred(
                        f"status_keys.{canon}",
                        alias,
                        f'`{p.settings.paths.status}` has `"{alias}": {shown}` and no `{default}`',
                    )
                )
                break
    return out


def rule_queue(p: Probe) -> list[Inferred]:
    """Queue folders from what exists: inbox/, queue/<priority>/, processing, done or recently_completed, failed."""
    out = []
    paths = p.settings.paths
    if p.unset("paths.queue_pending"):
        existing = [rel for rel in QUEUE_PENDING if p.isdir(rel)]
        if existing and existing != list(paths.queue_pending):
            out.append(
                Inferred("paths.queue_pending", existing, "folders exist: " + ", ".join(f"`{r}/`" for r in existing))
            )
    for name, candidates in QUEUE_OTHER.items():
        if not p.unset(f"paths.{name}") or p.isdir(getattr(paths, name)):
            continue
        for rel in candidates:
            if p.isdir(rel):
                out.append(Inferred(f"paths.{name}", rel, f"`{rel}/` exists (`{getattr(paths, name)}/` does not)"))
                break
    return out


def _pid_cmdline(p: Probe) -> list[str]:
    """argv of the live process the PID file names ([] when there is none); /proc read, no psutil import."""
    try:
        fd = os.open(p.path(p.settings.paths.pid_file), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as fh:
            pid = int(fh.read(64).split()[0])
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return [a.decode("utf-8", "replace") for a in fh.read().split(b"\0") if a]
    except (OSError, ValueError, IndexError):
        return []


def _scripts(p: Probe) -> tuple[list[str], list[str]]:
    """(daemon scripts, training scripts) at the workspace's top level, by name."""
    try:
        names = sorted(e.name for e in os.scandir(p.base) if e.name.endswith(".py") and e.is_file())
    except OSError:
        return [], []
    daemons = [n for n in names if "daemon" in n.lower()]
    trainers = [n for n in names if n.lower().startswith("train") and n not in daemons]
    return daemons, trainers


def _script_of(argv: list[str]) -> str | None:
    for i, tok in enumerate(argv[1:], 1):
        if tok == "-m" and i + 1 < len(argv):
            return argv[i + 1]
        if tok.endswith(".py"):
            return os.path.basename(tok)
    return None


def rule_processes(p: Probe) -> list[Inferred]:
    """Daemon and training patterns from the PID file's live process and the workspace's scripts."""
    out = []
    procs = p.settings.processes
    daemons, trainers = _scripts(p)
    live = _script_of(_pid_cmdline(p)) if p.unset("processes.daemon") else None
    if live and not os.path.isfile(p.base / live):
        live = None  # a reused PID running some other program is not evidence of the daemon
    if live and live not in procs.daemon:
        out.append(Inferred("processes.daemon", [live], f"the PID file's live process runs `{live}`"))
    elif p.unset("processes.daemon") and daemons and not set(daemons) & set(procs.daemon):
        out.append(
            Inferred(
                "processes.daemon",
                daemons,
                "daemon script(s) in the workspace: " + ", ".join(f"`{d}`" for d in daemons),
            )
        )
    if p.unset("processes.training") and trainers and not set(trainers) & set(procs.training):
        out.append(
            Inferred(
                "processes.training",
                trainers,
                "training script(s) in the workspace: " + ", ".join(f"`{t}`" for t in trainers),
            )
        )
    if p.unset("processes.training_in_daemon") and daemons and not trainers:
        hit = _trains_inside(p.base / daemons[0])
        if hit:
            out.append(
                Inferred(
                    "processes.training_in_daemon",
                    True,
                    f"`{daemons[0]}` trains itself (`{hit}`) and the workspace has no separate training script",
                )
            )
    return out


def _trains_inside(script: Path) -> str | None:
    from healthkit.system.fsutil import CAP_DOC, ReadProblem, read_bytes

    try:
        m = _TRAINS_INSIDE.search(read_bytes(script, CAP_DOC)[: 512 * 1024].decode("utf-8", "replace"))
    except ReadProblem:
        return None
    return m.group(0).strip() if m else None


def rule_run_format(p: Probe) -> list[Inferred]:
    """The run's format (healthkit.formats), recognised from the checkpoint folder's names; said only when it holds any."""
    if not p.unset("run.format"):
        return []
    from healthkit.formats.registry import recognise

    cfg = p.config if isinstance(p.config, dict) else {}
    key = p.settings.paths.checkpoints_config_key
    folder = p.path(cfg[key]) if key and isinstance(cfg.get(key), str) else p.path(p.settings.paths.checkpoints)
    fmt, found, _ = recognise(folder)
    if found is None:
        return []
    return [Inferred("run.format", fmt.name, f"{fmt.title}: {found.evidence}")]


OURS_WITHOUT_CONFIG = (".daemon.pid", "status/daemon_state.json", "queue/inbox", "queue/processing")


def rule_config_required(p: Probe) -> list[Inferred]:
    """No config.json: healthkit's schema applies only to our trainer's workspace (its PID file, daemon state, queue)."""
    if not p.unset("paths.config_schema") or os.path.lexists(p.path(p.settings.paths.config)):
        return []
    ours = [rel for rel in OURS_WITHOUT_CONFIG if os.path.lexists(p.path(rel))]
    if ours or not p.unset("run.config_required"):
        return []
    return [
        Inferred(
            "paths.config_schema",
            "none",
            f"there is no {p.settings.paths.config} and nothing of healthkit's trainer "
            f"({', '.join(OURS_WITHOUT_CONFIG)}): the run needs no config.json",
        )
    ]


RULES: tuple[Callable[[Probe], list[Inferred]], ...] = (
    rule_config_schema,
    rule_config_required,
    rule_checkpoints,
    rule_run_format,
    rule_status_file,
    rule_status_keys,
    rule_queue,
    rule_processes,
)


# applying -------------------------------------------------------------------------------


def _set(settings: Settings, dotted: str, value: Any) -> Settings:
    section, key = dotted.split(".", 1)
    new_section = dataclasses.replace(getattr(settings, section), **{key: value})
    new = dataclasses.replace(settings, **{section: new_section})
    new.explicit = settings.explicit
    return new


def detect(base: Path, declared: Settings) -> Settings:
    """``declared`` with every rule's guess applied; the guesses are in the result's ``inferred``."""
    from healthkit.system.deadline import phase

    with phase("detecting settings (reading config.json and the status file)"):
        probe = Probe(base, declared, declared.explicit)
    inferred: list[Inferred] = []
    for rule in RULES:
        with phase(f"detecting settings ({rule.__name__.removeprefix('rule_').replace('_', ' ')})"):
            guesses = rule(probe)
        for guess in guesses:
            probe.settings = _set(probe.settings, guess.setting, guess.value)
            inferred.append(guess)
    result = probe.settings
    result.inferred = tuple(inferred)
    return result


# healthkit.toml from the guesses --------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value) if isinstance(value, str) else repr(value)


def render_toml(base: Path, inferred: tuple[Inferred, ...]) -> str:
    """healthkit.toml stating each detected setting, with its evidence as a comment above it."""
    lines = [
        f"# healthkit.toml for {base}: written by `healthkit init --detect`.",
        "# Each setting was detected from what the workspace holds; the comment says from what.",
        "# Correct any wrong guess here: a setting stated in this file is never guessed again.",
    ]
    sections: dict[str, list[Inferred]] = {}
    for guess in inferred:
        sections.setdefault(guess.setting.split(".", 1)[0], []).append(guess)
    for section, guesses in sections.items():
        lines += ["", f"[{section}]"]
        for g in guesses:
            lines += [f"# {g.evidence}", f"{g.setting.split('.', 1)[1]} = {_toml_value(g.value)}"]
    if not inferred:
        lines += ["", "# Nothing to detect: healthkit's defaults fit this workspace."]
    return "\n".join(lines) + "\n"


class InitError(Exception):
    """`init --detect` cannot write: the message says why; nothing was written."""


def init_detect(base: Path, force: bool = False, print_only: bool = False) -> tuple[str, Path | None]:
    """(the healthkit.toml text, the path written or None when only printed). Refuses to overwrite without ``force``."""
    from healthkit.system.fsutil import atomic_write

    base = Path(base).expanduser()
    if not base.is_dir():
        raise InitError(f"{base} is not a folder")
    target = base / SETTINGS_FILE
    text = render_toml(
        base.absolute(), cast("tuple[Inferred, ...]", detect(base.absolute(), Settings()).inferred)
    )  # detect sets it
    if print_only:
        return text, None
    if target.exists() and not force:
        raise InitError(f"{target} exists; pass --force to replace it (or --print to see what detection finds)")
    atomic_write(target, text)
    return text, target
