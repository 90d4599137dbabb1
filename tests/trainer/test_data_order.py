"""The seeded example order and the windows a rewind cuts out of it: pure arithmetic, then HF's own dataloader.

The order must be what HF trains on (HF asks the sampler, calls set_epoch, and on a resume skips the first k
batches by count), and a cut must leave every position before the window where it was and the epoch's length
as it was, or HF's resume arithmetic would skip the wrong batches.
"""

from __future__ import annotations

import math

import pytest

from healthkit.trainer.data_order import Geometry, SeededOrder, Window, epoch_order, without


@pytest.mark.parametrize("n, batch, accum, world", [(80, 4, 1, 1), (81, 4, 2, 1), (10, 4, 4, 1), (100, 3, 2, 2)])
def test_steps_per_epoch_is_hf_s_count(n, batch, accum, world):
    g = Geometry(n, batch, accum, world)
    per_rank = math.ceil(n / (batch * world))
    assert g.steps_per_epoch == max(per_rank // accum + int(per_rank % accum > 0), 1)  # trainer.py's formula
    epoch, start, end = g.span(g.steps_per_epoch + 1)  # the first step of the second epoch
    assert (epoch, start) == (1, 0) and end == min(g.per_step, n)


def test_span_of_a_step():
    g = Geometry(80, 4, 2)  # 8 examples a step, 10 steps an epoch
    assert g.span(1) == (0, 0, 8) and g.span(10) == (0, 72, 80) and g.span(11) == (1, 0, 8)
    assert g.cut(9, 12) == {0: (64, 80), 1: (0, 16)}  # a window across an epoch's end


def test_the_order_is_seeded_per_epoch_and_stable():
    a, b = SeededOrder(Geometry(50, 5), seed=42), SeededOrder(Geometry(50, 5), seed=42)
    assert list(a) == list(b) == epoch_order(50, 42, 0) and sorted(a) == list(range(50))
    a.set_epoch(1)
    assert list(a) != epoch_order(50, 42, 0) and sorted(a) == list(range(50))
    assert epoch_order(50, 42, 1) == list(a) and epoch_order(50, 43, 0) != epoch_order(50, 42, 0)


def test_a_window_is_cut_out_and_the_epoch_keeps_its_length_and_its_prefix():
    g = Geometry(80, 4, 2)
    plain = epoch_order(80, 7, 0)
    order = SeededOrder(g, seed=7, windows=[Window(3, 4)])  # steps 3-4: positions 16-32
    got = list(order)
    assert len(got) == 80 and got[:16] == plain[:16]
    window = plain[16:32]
    assert order.skipped(0) == window and not set(window) & set(got)
    assert got[16:64] == plain[32:] and got[64:] == plain[:16]  # topped up with the first examples it kept
    order.set_epoch(1)
    assert list(order) == epoch_order(80, 7, 1) and order.skipped(1) == []  # the next epoch is whole


def test_windows_apply_in_the_order_they_were_recorded():
    g = Geometry(40, 2)
    first = without(epoch_order(40, 0, 0), 10, 14)  # steps 6-7
    both = SeededOrder(g, seed=0, windows=[Window(6, 7), Window(3, 3)])
    assert list(both) == without(first, 4, 6)


def test_a_window_at_the_epoch_start_is_never_topped_up_with_itself():
    order = SeededOrder(Geometry(10, 2), seed=1, windows=[Window(1, 1)])
    got = list(order)
    assert not set(order.skipped(0)) & set(got) and len(got) == 10
    assert without([1, 2], 0, 2) == [1, 2]  # a window of the whole epoch is not cut: nothing would be left


def test_hf_trains_in_this_order_and_resumes_at_the_right_position():
    """HF's own train dataloader, set_epoch and resume skip (get_resumed_dataloader) over the sampler."""
    torch = pytest.importorskip("torch", reason="torch not installed (extra `trainer`)")
    pytest.importorskip("transformers", reason="transformers not installed (extra `trainer`)")
    from transformers import Trainer, TrainingArguments

    class Indexed(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 24

        def __getitem__(self, i: int) -> dict:
            return {"input_ids": torch.tensor([i]), "labels": torch.tensor([i])}

    g = Geometry(24, 2, 2)  # 4 examples a step, 6 steps an epoch
    order = SeededOrder(g, seed=5, windows=[Window(2, 2)])

    class Ordered(Trainer):
        def _get_train_sampler(self, *a, **k):
            return order

    import tempfile

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=2,
            gradient_accumulation_steps=2,
            use_cpu=True,
            report_to="none",
            seed=5,
            remove_unused_columns=False,  # a Linear's forward names none of them
        )
        trainer = Ordered(model=torch.nn.Linear(1, 1), args=args, train_dataset=Indexed())
        loader = trainer.get_train_dataloader()
        loader.set_epoch(1)
        assert [int(i) for b in loader for i in b["input_ids"][:, 0]] == epoch_order(24, 5, 1)
        loader.set_epoch(0)
        resumed = trainer.get_resumed_dataloader(loader, 3 * 2)  # resumed at step 3: 6 micro-batches skipped
        resumed.set_epoch(0)
        got = [int(i) for b in resumed for i in b["input_ids"][:, 0]]
    assert got == list(order)[12:] and not set(order.skipped(0)) & set(got)
