"""A real Accelerate training loop on the CPU: `save_state()` every few steps into `checkpoints/checkpoint_N/`.

`ProjectConfiguration(automatic_checkpoint_naming=True, total_limit=None)` as the issue's run; losses go to
TensorBoard through Accelerate's own tracker. `interrupt_at` makes the Nth save_state stop after the model
weights, inside Accelerate's own `save_accelerator_state` (its `save` raises at the optimizer), as a kill would.
"""

from __future__ import annotations

from pathlib import Path
from unittest import mock


class Interrupted(Exception):
    pass


def run(
    out: Path,
    *,
    steps: int = 60,
    save_every: int = 5,
    val_every: int | None = 10,
    interrupt_at: int | None = None,
    log_with: str | None = "tensorboard",
) -> Path:
    """Train; return the checkpoint folder (`<out>/checkpoints`)."""
    import accelerate.checkpointing as ckpt_mod
    import torch
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    torch.manual_seed(0)
    acc = Accelerator(
        cpu=True,
        log_with=log_with,
        project_config=ProjectConfiguration(project_dir=str(out), automatic_checkpoint_naming=True, total_limit=None),
    )
    if log_with:
        acc.init_trackers("run")
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    model, opt = acc.prepare(model, opt)
    x, y = torch.randn(64, 4), torch.randn(64, 1)
    saves = 0
    real_save = ckpt_mod.save
    for step in range(1, steps + 1):
        loss = torch.nn.functional.mse_loss(model(x), y)
        acc.backward(loss)
        opt.step()
        opt.zero_grad()
        if log_with:
            acc.log({"train_loss": loss.item()}, step=step)
            if val_every and step % val_every == 0:
                with torch.no_grad():
                    acc.log({"val_loss": torch.nn.functional.mse_loss(model(x + 0.1), y).item()}, step=step)
        if step % save_every == 0:
            if interrupt_at is not None and saves == interrupt_at:

                def dying(obj, path, *a, **k):
                    if "optimizer" in str(path):
                        raise Interrupted(path)
                    return real_save(obj, path, *a, **k)

                with mock.patch.object(ckpt_mod, "save", dying):
                    try:
                        acc.save_state()
                    except Interrupted:
                        break
            acc.save_state()
            saves += 1
    if log_with:
        acc.end_training()
    return out / "checkpoints"
