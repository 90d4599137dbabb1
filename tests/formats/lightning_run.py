"""A real PyTorch Lightning run on the CPU: a tiny model, a few dozen steps, the stack's own ModelCheckpoint and CSVLogger.

Validation loss is scripted by step (`val_loss_at`), so a test knows which checkpoint is best and when it turns NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def run(
    out: Path,
    *,
    max_steps: int = 60,
    val_every: int | None = None,
    monitor: str | None = None,
    save_top_k: int = -1,
    every_n_train_steps: int | None = 5,
    save_last: bool = False,
    val_loss_at: Callable[[int], float] | None = None,
    tensorboard: bool = False,
) -> Path:
    """Train and return the checkpoint folder (`<out>/lightning_logs/version_0/checkpoints`)."""
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    data = TensorDataset(torch.randn(64, 4), torch.randn(64, 1))

    class Tiny(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch, _i):
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.layer(x), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, _i):
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.layer(x), y)
            if val_loss_at is not None:
                loss = loss * 0 + val_loss_at(self.global_step)
            self.log("val_loss", loss)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    ckpt = ModelCheckpoint(
        monitor=monitor, save_top_k=save_top_k, every_n_train_steps=every_n_train_steps, save_last=save_last
    )
    trainer = L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=(TensorBoardLogger if tensorboard else CSVLogger)(str(out), name="lightning_logs"),
        callbacks=[ckpt],
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        limit_val_batches=0 if val_every is None else 2,
        val_check_interval=val_every,
        check_val_every_n_epoch=None,
        default_root_dir=str(out),
    )
    loader = DataLoader(data, batch_size=4)
    trainer.fit(Tiny(), loader, DataLoader(data, batch_size=4) if val_every else None)
    return out / "lightning_logs" / "version_0" / "checkpoints"
