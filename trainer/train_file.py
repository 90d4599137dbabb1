"""Train one queue file in its own process: `python -m healthkit.trainer.train_file --workspace ABS --file PATH`.

Started by the daemon (directly, or under torchrun/accelerate launch: every rank runs
this; rank 0 alone writes status, results and moves files). Exit codes: 0 completed
(the file is in done/, its final model in models/<stem>/), 65 the data is bad (the file
is in failed/), 75 stopped on request (a checkpoint was saved; the file stays in
processing/), 74 the disk is full (the daemon waits for space, then resumes), anything else a crash (the daemon resumes from the last complete checkpoint).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import psutil

from healthkit.contract.config_model import TrainingConfig

from . import checkpoints as ck
from . import queue as q
from . import rewind
from .data import ChatDataset, DataError, Dropped, TokenizedDataset, read_examples, split
from .data_order import SEEDED, Geometry, SeededOrder, order_of, recorded
from .diskspace import out_of_room
from .layout import EXIT_DATA, EXIT_DISK_FULL, EXIT_FENCED, EXIT_OK, EXIT_STOPPED, Layout, iso_now
from .modeling import base_source, is_adapter, load_model, save_merged
from .preflight import load_config
from .state import write_json
from .training_args import normalized

log = logging.getLogger("healthkit.trainer.train_file")


def write_result(layout: Layout, file_name: str, outcome: str, **extra: Any) -> None:
    write_json(
        layout.last_result, {"file": file_name, "outcome": outcome, "pid": os.getpid(), "at": iso_now(), **extra}
    )


def model_source(layout: Layout, cfg: TrainingConfig) -> str:
    if cfg.continue_from_previous:
        latest = ck.latest_final(layout)
        if latest is not None:
            return str(latest)
    return base_source(layout, cfg)


def training_arguments(cfg: TrainingConfig, layout: Layout, has_eval: bool, world: int) -> Any:
    import torch
    from transformers import TrainingArguments

    cuda = torch.cuda.is_available()
    kw: dict[str, Any] = {
        "output_dir": str(layout.checkpoints),
        "eval_strategy": cfg.eval_strategy if has_eval else "no",
        "eval_steps": cfg.eval_steps,
        "save_strategy": cfg.save_strategy,
        "save_steps": cfg.save_steps,
        "save_total_limit": cfg.save_total_limit,
        "logging_strategy": "steps",
        "logging_steps": cfg.logging_steps,
        "max_steps": cfg.max_steps,
        "num_train_epochs": cfg.num_train_epochs,
        "learning_rate": cfg.learning_rate,
        "per_device_train_batch_size": cfg.per_device_train_batch_size,
        "per_device_eval_batch_size": cfg.per_device_eval_batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "warmup_steps": cfg.warmup_steps,
        "weight_decay": cfg.weight_decay,
        "seed": cfg.seed,
        "load_best_model_at_end": cfg.load_best_model_at_end and has_eval,
        "metric_for_best_model": cfg.metric_for_best_model,
        "bf16": cfg.bf16,
        "fp16": cfg.fp16,
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "use_cpu": not cuda,
    }
    if world > 1:
        kw["ddp_backend"] = "nccl" if cuda else "gloo"
        kw["ddp_find_unused_parameters"] = False
    known = {f.name for f in dataclasses.fields(TrainingArguments)}
    kw.update(normalized(cfg.training_args, known))  # checked against TrainingArguments at start (targs.py)
    if cfg.lora and (kw.get("gradient_checkpointing") or kw.get("activation_checkpointing")):
        ckw = (
            "activation_checkpointing_kwargs"
            if "activation_checkpointing_kwargs" in known
            else "gradient_checkpointing_kwargs"
        )
        kw.setdefault(
            ckw, {"use_reentrant": False}
        )  # frozen inputs: reentrant checkpointing would drop the adapter's grads
    return TrainingArguments(**{k: v for k, v in kw.items() if k in known})


def load_data(layout: Layout, cfg: TrainingConfig, file: Path) -> tuple[str, list[Any], list[Any]]:
    """(format, training examples, held-out examples) of a queue file; DataError names the bad lines."""
    fmt, examples = read_examples(file, cfg.data_format, cfg.text_field)
    held: list[Any] = []
    if cfg.eval_strategy != "no":
        if cfg.validation_file:
            vfmt, held = read_examples(layout.resolve(cfg.validation_file), cfg.data_format, cfg.text_field)
            if vfmt != fmt:
                raise DataError(f"{file.name} is {fmt} data but validation_file {cfg.validation_file} is {vfmt} data")
        else:
            examples, held = split(examples, cfg.validation_split, cfg.seed)
        if cfg.max_eval_samples:
            held = held[: cfg.max_eval_samples]
    return fmt, examples, held


def load_tokenizer(layout: Layout, cfg: TrainingConfig, src: str) -> Any:
    from transformers import AutoTokenizer

    tok_src = cfg.tokenizer and str(layout.resolve(cfg.tokenizer))
    if not tok_src:
        tok_src = (
            base_source(layout, cfg) if is_adapter(src) and not (Path(src) / "tokenizer_config.json").exists() else src
        )
    tokenizer = AutoTokenizer.from_pretrained(tok_src)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if cfg.chat_template:
        tokenizer.chat_template = cfg.chat_template  # saved with the final model, so inference renders the same way
    return tokenizer


def datasets(tokenizer: Any, cfg: TrainingConfig, name: str, fmt: str, examples: list[Any], held: list[Any]):
    """(train, eval or None, collator, dropped or None): chat data carries its own labels (assistant turns only).

    A conversation that does not fit max_seq_length is dropped (train and held-out alike) and
    counted; DataError when more than MAX_DROPPED_SHARE are, or when nothing trainable is left.
    """
    from transformers import DataCollatorForLanguageModeling, DataCollatorForSeq2Seq

    if fmt != "chat":
        held_ds = TokenizedDataset(tokenizer, held, cfg.max_seq_length) if held else None
        return (
            TokenizedDataset(tokenizer, examples, cfg.max_seq_length),
            held_ds,
            DataCollatorForLanguageModeling(tokenizer, mlm=False),
            None,
        )
    if not tokenizer.chat_template:
        raise DataError(
            f"{name} is chat data but the tokenizer has no chat template and config.json sets no chat_template"
        )
    train = ChatDataset(tokenizer, examples, cfg.max_seq_length, name=name)
    held_ds = ChatDataset(tokenizer, held, cfg.max_seq_length, name=f"{name} (held out)") if held else None
    lines = train.dropped + (held_ds.dropped if held_ds is not None else [])
    dropped = Dropped(lines, len(examples) + len(held), cfg.max_seq_length) if lines else None
    if dropped is not None:
        why = dropped.failure(name, len(train))
        if why:
            raise DataError(why)
        log.warning("%s: dropped %s; training on the other %d", name, dropped.summary(), dropped.total - len(lines))
    if held_ds is not None and not len(held_ds):
        held_ds = None  # every held-out line was too long
    collator = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100, padding=True)
    return train, held_ds, collator, dropped


def example_order(
    layout: Layout, cfg: TrainingConfig, args: Any, name: str, examples: int, resume_from: str | None = None
) -> SeededOrder | None:
    """The seeded example order (trainer/data_order.py) with the file's rewind windows cut out; None (HF's own
    sampler) when the configuration asks for another sampling (group_by_length, sequential), or when the file
    resumes from a checkpoint saved in HF's order: an upgrade must not change the order of a file half-way through
    an epoch (HF's resume skips the first k batches of whatever order it is given)."""
    if getattr(args, "train_sampling_strategy", "random") != "random" or getattr(args, "group_by_length", False):
        if rewind.windows(layout, name):
            log.warning("%s was rewound, but train_sampling_strategy is not random: no batch is skipped", name)
        return None
    if resume_from is not None and order_of(Path(resume_from)) != SEEDED:
        log.info("%s resumes from a checkpoint saved in HF's own order: it keeps that order", name)
        return None
    geometry = Geometry(examples, args.per_device_train_batch_size, args.gradient_accumulation_steps, args.world_size)
    recorded = rewind.rewinds(layout, name)
    order = SeededOrder(geometry, args.seed, rewind.windows(layout, name, recorded))
    for r in recorded:
        if isinstance(r.get("skip_first"), int) and isinstance(r.get("skip_last"), int):
            log.info(
                "rewound to %s (%s): the batches of steps %d-%d are skipped (%d example(s) per step)",
                r.get("to"),
                r.get("reason"),
                r["skip_first"],
                r["skip_last"],
                geometry.per_step,
            )
    return order


def trainer_class(
    layout: Layout, file_name: str, lease_guard: Any = None, loss_guard: Any = None, order: Any = None
) -> Any:
    """HF's Trainer whose saves first set incomplete checkpoints aside, so that its rotation deletes only complete ones,
    that commits a checkpoint only while its lease generation is current (``lease_guard``: trainer.lease.LeaseGuard),
    whose every micro-batch loss reaches the loss guard (trainer/guard.py) before the step's save, and whose examples
    come in ``order`` (trainer/data_order.py: known step by step, so that a rewind can skip a window's batches)."""
    from transformers import Trainer

    from .guard import inject_at

    nan_at = inject_at()

    class SoundRotationTrainer(Trainer):
        def _get_train_sampler(self, *args: Any, **kwargs: Any) -> Any:
            return order if order is not None else super()._get_train_sampler(*args, **kwargs)

        def compute_loss(self, *args: Any, **kwargs: Any) -> Any:
            out = super().compute_loss(*args, **kwargs)
            if nan_at is not None and self.state.global_step + 1 >= nan_at and self.model.training:  # type: ignore[union-attr]  # tests only; transformers types Trainer.model Optional, set here
                if isinstance(out, tuple):
                    return (out[0] * float("nan"), *out[1:])
                return out * float("nan")
            return out

        def training_step(self, *args: Any, **kwargs: Any) -> Any:
            loss = super().training_step(*args, **kwargs)
            if loss_guard is not None:
                loss_guard.observe(loss)
            return loss

        def _save_checkpoint(self, *args: Any, **kwargs: Any) -> Any:
            if lease_guard is not None and not lease_guard.may_commit():
                log.error(
                    "checkpoint of step %d not written: fenced (%s)", self.state.global_step, lease_guard.fenced_why
                )
                self.control.should_training_stop = True
                return None
            t0 = time.monotonic()
            if self.args.should_save:
                aside = ck.set_aside_incomplete(layout, file_name)
                if aside is not None:
                    log.warning(
                        "incomplete checkpoint(s) moved to %s before saving step %d (HF's rotation would have "
                        "deleted a complete one and kept them)",
                        aside.name,
                        self.state.global_step,
                    )
            out = super()._save_checkpoint(*args, **kwargs)
            for cb in self.callback_handler.callbacks:  # the status file says how long the save took (goodput)
                if hasattr(cb, "save_seconds"):
                    cb.save_seconds = time.monotonic() - t0
            return out

    return SoundRotationTrainer


def peak_rss() -> int:
    """This process's peak resident set size in bytes (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def fail_data(layout: Layout, name: str, file: Path, exc: DataError, rank0: bool) -> int:
    log.error("cannot train %s: %s", name, exc)
    if rank0:
        write_result(layout, name, "data-error", error=str(exc))
        if file.exists():
            q.finish_failed(layout, file, str(exc), log=layout.logs / f"train-{file.stem}.log")
    return EXIT_DATA


def fail_guarded(layout: Layout, name: str, file: Path, guard: Any, cb: Any, rank0: bool) -> int:
    """The guard stopped the file (a non-finite loss, or a spike with spike_action stop): it fails with the step and the
    reason; its checkpoints, all from before the stop, stay for `healthkit queue retry` (moved aside as a failed file's)."""
    kept = ck.last_complete_of(layout, name)
    why = f"{guard.reason}; no checkpoint was saved after it" + (
        f"; the newest sound checkpoint, {kept.name}, is kept for `healthkit queue retry`"
        if kept
        else "; no checkpoint of this file exists, a retry starts from the beginning"
    )
    log.error("%s failed: %s", name, why)
    if rank0:
        cb.finish("crashed", error=f"failed: {why}")  # the daemon's word for a failed file (healthkit.contract states)
        write_result(layout, name, "diverged", error=why, step=guard.stopped_at)
        if file.exists():
            q.finish_failed(layout, file, why, log=layout.logs / f"train-{file.stem}.log")
    return EXIT_DATA


def trained_on(args: Any, cfg: TrainingConfig) -> dict[str, Any]:
    """Where and in what precision the weights were trained: a bf16 or 4-bit model is not a CPU fp32 one."""
    precision = "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"
    return {
        "device": str(args.device),
        "precision": precision,
        "base_quantization": "nf4" if cfg.lora and cfg.lora.load_in_4bit else None,
    }


def finish(
    layout: Layout,
    cfg: TrainingConfig,
    trainer: Any,
    cb: Any,
    file: Path,
    src: str,
    speed: dict,
    dropped: dict | None = None,
) -> None:
    """Final model to models/<stem>/ (the adapter, plus merged/ with merge_final), file to done/ (rank 0 only)."""
    name = file.name
    stem = name[: -len(".jsonl")] if name.endswith(".jsonl") else name
    saving = layout.models / f".{stem}.saving"
    trainer.save_model(str(saving))
    if not trainer.is_world_process_zero():
        return
    if cfg.lora and cfg.lora.merge_final:
        save_merged(layout, cfg, saving, saving / "merged")
    final = ck.install_final(
        layout,
        saving,
        stem,
        {
            "file": name,
            "global_step": trainer.state.global_step,
            "started_from": src,
            "val_loss": cb.status.get("val_loss"),
            "loss": cb.status.get("loss"),
            "kind": "lora-adapter" if cfg.lora else "full",
            **trained_on(trainer.args, cfg),
        },
    )
    ck.prune_finals(layout, cfg.keep_final_models)
    q.finish_done(
        layout,
        file,
        {
            "step": trainer.state.global_step,
            "final_model": str(final.relative_to(layout.base)),
            "dropped_lines": dropped,
        },
    )
    ck.clear(layout, name)
    rewind.clear(layout, name)
    cb.finish("completed", eta_seconds=0, final_model=str(final.relative_to(layout.base)))
    write_result(
        layout,
        name,
        "completed",
        step=trainer.state.global_step,
        final_model=str(final),
        dropped_lines=dropped,
        **speed,
    )
    log.info("completed %s at step %d; final model in %s", name, trainer.state.global_step, final)


def run(layout: Layout, file: Path, attempt: int, resume_from: str | None) -> int:
    rank0 = int(os.environ.get("RANK", "0")) == 0
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cfg = load_config(layout)
    name = file.name
    try:
        fmt, examples, held = load_data(layout, cfg, file)
    except DataError as exc:
        return fail_data(layout, name, file, exc, rank0)

    import transformers

    from .callbacks import HealthCallback

    transformers.utils.logging.set_verbosity_warning()
    src = model_source(layout, cfg)
    tokenizer = load_tokenizer(layout, cfg, src)
    try:
        train_ds, eval_ds, collator, dropped = datasets(tokenizer, cfg, name, fmt, examples, held)
    except DataError as exc:
        return fail_data(layout, name, file, exc, rank0)
    drop_record = dropped.record() if dropped is not None else None
    model = load_model(layout, cfg, src)
    if cfg.eval_strategy != "no" and eval_ds is None:
        log.warning("evaluation is configured but %s has too few lines to hold any out: no val_loss for it", name)
    args = training_arguments(cfg, layout, eval_ds is not None, world)
    resumed = Path(resume_from).name if resume_from else None
    from .lease import LeaseGuard

    guard = LeaseGuard.from_env(layout.pid_file, layout.status_dir) if rank0 else None
    cb = HealthCallback(
        layout, cfg, name, rank0=rank0, distributed=world > 1, attempt=attempt, resumed_from=resumed, lease_guard=guard
    )
    cb.status["dropped_lines"] = drop_record  # the status file says what this file trains without
    log.info(
        "training %s (%s data%s) from %s (%d examples, %d held out)%s",
        name,
        fmt,
        ", LoRA" if cfg.lora else "",
        src,
        len(train_ds),
        len(held),
        f", resuming from {resume_from}" if resume_from else "",
    )
    from .guard import LossGuard

    loss_guard = LossGuard(cfg.guard.spike_action, distributed=world > 1)
    order = example_order(layout, cfg, args, name, len(train_ds), resume_from)
    cb.data_order = SEEDED if order is not None else None
    cb.status["skipped_steps"] = [[w.first, w.last] for w in order.windows] if order is not None else None
    trainer = trainer_class(layout, name, guard, loss_guard, order)(
        model=model,
        args=args,
        train_dataset=recorded(train_ds),
        eval_dataset=eval_ds,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=[cb, loss_guard],
    )
    cpu0 = time.process_time()
    out = trainer.train(resume_from_checkpoint=resume_from)
    speed = {k: out.metrics[k] for k in ("train_runtime", "train_steps_per_second") if k in out.metrics}
    speed["train_cpu_s"] = round(time.process_time() - cpu0, 3)  # all threads of this process, hooks included
    speed["peak_rss_bytes"] = peak_rss()  # LoRA against full fine-tuning: the adapter's whole point
    if cb.fenced or (guard is not None and guard.fenced_why):
        why = cb.fenced or guard.fenced_why  # type: ignore[union-attr]
        log.error("fenced at step %d: %s; stopped without committing a checkpoint", trainer.state.global_step, why)
        return EXIT_FENCED
    if loss_guard.reason is not None:
        return fail_guarded(layout, name, file, loss_guard, cb, rank0)
    if cb.stop_requested:
        log.info("stopped on request at step %d; checkpoint saved", trainer.state.global_step)
        if rank0:
            cb.finish("idle")
            write_result(layout, name, "stopped", step=trainer.state.global_step)
        return EXIT_STOPPED
    if eval_ds is not None and not cb.evaluated:
        trainer.evaluate()  # eval_steps beyond this file's steps: validate once at the end rather than never
    finish(layout, cfg, trainer, cb, file, src, speed, drop_record)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m healthkit.trainer.train_file", description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", required=True, type=Path)
    ap.add_argument("--file", required=True, type=Path)
    ap.add_argument("--attempt", type=int, default=1)
    ap.add_argument("--resume-from", default=None)
    a = ap.parse_args(argv)
    rank = os.environ.get("RANK", "0")
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format=f"%(asctime)s [train rank {rank} pid %(process)d] %(levelname)s %(message)s",
    )
    for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(k, "1")  # nothing downloads weights or data at run time
    layout = Layout.of(a.workspace)
    try:
        return run(layout, a.file.absolute(), a.attempt, a.resume_from)
    except BaseException as exc:
        if isinstance(exc, SystemExit):
            raise
        return _crashed(layout, a.file.name, rank, exc)


def _drop_cut_short_save(layout: Layout, name: str) -> None:
    """Remove the checkpoint this process's failed save left: incomplete, no marker of another file, made after we
    started (so provably ours). It frees its space now and never looks like a checkpoint to resume from."""
    try:
        started = psutil.Process().create_time()
    except psutil.Error:
        return
    for _, p in reversed(ck.checkpoints(layout.checkpoints)):
        try:
            made = p.stat().st_ctime
        except OSError:
            continue
        if made >= started and not ck.is_complete(p) and ck.owner_of(p) in (None, name):
            shutil.rmtree(p, ignore_errors=True)
            log.info("removed %s: the incomplete checkpoint the failed save left", p.name)


def _crashed(layout: Layout, name: str, rank: str, exc: BaseException) -> int:
    """Say why before dying: EXIT_DISK_FULL for a write that found no space, 1 for anything else."""
    err = f"{type(exc).__name__}: {exc}"
    full = out_of_room(layout, exc)
    if full:
        log.error("disk full: %s (the last complete checkpoint survives; the daemon resumes when there is room)", err)
        if rank == "0":
            _drop_cut_short_save(layout, name)
    else:
        log.error("training crashed: %s\n%s", err, traceback.format_exc())
    if rank == "0":
        try:
            write_result(layout, name, "disk-full" if full else "crashed", error=err)
        except OSError:
            pass  # on a full disk the exit code says it
    return EXIT_DISK_FULL if full else 1


if __name__ == "__main__":
    sys.exit(main())
