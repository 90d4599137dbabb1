"""What `daemon start` checks before it trains anything, so a broken setup fails at once, loudly, not hours later.

- config.json parses and passes its schema (the same model the `config.invalid` check uses);
- torch, transformers and accelerate are importable (Trainer refuses to run without accelerate);
- evaluation, when configured, can run: the validation file exists and parses, or a split is set;
  eval_steps beyond max_steps is said (validation then runs once, at the end of each file);
- base_model is a local folder (a hub id would make the child reach for the network and crash);
- the docs do not drift from config.json (the audit's own `drift` check): fail or warn by `drift_policy`.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field

from healthkit.config_model import TrainingConfig, validate_config

from .data import DataError, read_texts
from .layout import Layout

TRAINER_DEPS = ("torch", "transformers", "accelerate")


class ConfigProblem(Exception):
    """config.json cannot be used; the message lists each problem with its JSON pointer."""


def load_config(layout: Layout) -> TrainingConfig:
    path = layout.config
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigProblem(f"{path} does not exist (create one with `healthkit init {layout.base}`)") from None
    except (OSError, ValueError) as exc:
        raise ConfigProblem(f"{path} cannot be read as JSON: {exc}") from None
    cfg, errors = validate_config(data)
    if cfg is None:
        lines = "\n".join(f"  {ptr or '/'}: {msg}" for ptr, msg in errors)
        raise ConfigProblem(f"{path} fails its schema (healthkit/schemas/config.schema.json):\n{lines}")
    return cfg


@dataclass
class Preflight:
    config: TrainingConfig | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def missing_deps() -> list[str]:
    return [m for m in TRAINER_DEPS if importlib.util.find_spec(m) is None]


def check_validation(layout: Layout, cfg: TrainingConfig, pf: Preflight) -> None:
    if cfg.eval_strategy == "no":
        pf.warnings.append("eval_strategy is 'no': no validation loss will be computed (overfitting cannot be seen)")
        return
    if cfg.validation_file:
        p = layout.resolve(cfg.validation_file)
        try:
            read_texts(p, cfg.text_field)
        except DataError as exc:
            pf.errors.append(f"evaluation is configured (eval_strategy={cfg.eval_strategy}) but validation_file cannot be used: {exc}"
                             if p.exists() else
                             f"evaluation is configured (eval_strategy={cfg.eval_strategy}) but validation_file {p} does not exist")
    elif cfg.validation_split <= 0:
        pf.errors.append(f"evaluation is configured (eval_strategy={cfg.eval_strategy}) but there is no validation_file "
                         "and validation_split is 0: set one of them, or eval_strategy 'no'")
    if cfg.eval_strategy == "steps" and cfg.max_steps > 0 and cfg.eval_steps > cfg.max_steps:
        pf.warnings.append(f"eval_steps={cfg.eval_steps} is more than max_steps={cfg.max_steps}: validation will not run during "
                           "a file; it runs once at the end of each file")
    if cfg.load_best_model_at_end and cfg.eval_strategy == "steps" and cfg.save_steps % cfg.eval_steps:
        pf.errors.append(f"load_best_model_at_end needs save_steps ({cfg.save_steps}) to be a multiple of eval_steps ({cfg.eval_steps})")


def check_drift(layout: Layout, cfg: TrainingConfig, pf: Preflight) -> None:
    if cfg.drift_policy == "off":
        return
    try:
        from healthkit.api import audit
        from healthkit.selectors import SelectorError

        report = audit(layout.base, select=["config.doc-drift"], record_costs=False)
    except SelectorError:
        pf.warnings.append("the docs drift check is not installed (no check reports config.doc-drift): docs were not compared")
        return
    except Exception as exc:  # noqa: BLE001 - an audit bug must not stop training; say it
        pf.warnings.append(f"the docs drift check could not run: {type(exc).__name__}: {exc}")
        return
    if not report.results:
        pf.warnings.append("the docs drift check is not installed (no check reports config.doc-drift): docs were not compared")
        return
    for r in report.results:
        if r.error:
            pf.warnings.append(f"the docs drift check could not run: {r.error}")
        for f in r.findings:
            if f.code != "config.doc-drift":
                continue
            detail = "; ".join(f.problem) if isinstance(f.problem, list) else str(f.problem or "")
            msg = f"{f.code}: {f.title}" + (f" ({detail})" if detail else "")
            (pf.errors if cfg.drift_policy == "fail" else pf.warnings).append(
                msg + ("" if cfg.drift_policy == "fail" else " [drift_policy=warn]"))


def base_model_problem(layout: Layout, base_model: str) -> str | None:
    """Why ``base_model`` cannot be trained from, or None: it must be a local folder (the trainer runs offline)."""
    base = layout.resolve(base_model)
    if base.is_dir():
        return None
    if base.exists():
        return f"base_model {base_model!r} is not a folder ({base})"
    return (f"base_model {base_model!r} is not a local folder ({base}); the trainer runs offline and downloads nothing: "
            "download the model once and set base_model to its folder")


def run_preflight(layout: Layout, drift: bool = True) -> Preflight:
    pf = Preflight()
    try:
        pf.config = load_config(layout)
    except ConfigProblem as exc:
        pf.errors.append(str(exc))
        return pf
    missing = missing_deps()
    if missing:
        pf.errors.append(f"the trainer needs {', '.join(missing)}: pip install 'healthkit[trainer]' "
                         "(transformers' Trainer refuses to run without accelerate)")
    cfg = pf.config
    problem = base_model_problem(layout, cfg.base_model)
    if problem:
        pf.errors.append(problem)
    check_validation(layout, cfg, pf)
    if cfg.launcher != "none" and cfg.nnodes > 1 and not cfg.rdzv_endpoint:
        pf.errors.append(f"launcher {cfg.launcher} with nnodes={cfg.nnodes} needs rdzv_endpoint (host:port)")
    if drift:
        check_drift(layout, cfg, pf)
    return pf


def describe(pf: Preflight) -> str:
    lines = [f"ERROR: {e}" for e in pf.errors] + [f"WARNING: {w}" for w in pf.warnings]
    return "\n".join(lines)
