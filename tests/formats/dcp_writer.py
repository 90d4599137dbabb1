"""Writes FSDP-style sharded checkpoints with torch.distributed.checkpoint's own save code: two processes, gloo, loopback.

Run as `python dcp_writer.py OUT_DIR PORT`: each rank holds half of every parameter (a DTensor sharded on dim 0 over a
CPU device mesh, as FSDP's SHARDED_STATE_DICT gives), and `dcp.save` writes `.metadata` plus one `__{rank}_0.distcp`
per rank into OUT_DIR/pytorch_model_fsdp_0 and OUT_DIR/optimizer_0, as accelerate's save_fsdp_model/_optimizer do.
"""

import os
import sys


def run(rank: int, out: str, port: int) -> None:
    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    mesh = init_device_mesh("cpu", (2,))
    torch.manual_seed(0)
    model = {f"layers.{i}.weight": distribute_tensor(torch.randn(64, 32), mesh, [Shard(0)]) for i in range(3)}
    optim = {
        f"state.layers.{i}.weight.exp_avg": distribute_tensor(torch.randn(64, 32), mesh, [Shard(0)]) for i in range(3)
    }
    dcp.save({"model": model}, storage_writer=dcp.FileSystemWriter(os.path.join(out, "pytorch_model_fsdp_0")))
    dcp.save({"optimizer": optim}, storage_writer=dcp.FileSystemWriter(os.path.join(out, "optimizer_0")))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    import torch.multiprocessing as mp

    mp.spawn(run, args=(sys.argv[1], int(sys.argv[2])), nprocs=2, join=True)
