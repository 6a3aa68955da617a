"""A background checkpoint save holds the state of the step it was asked for, not of the steps that ran while it
was being written (run by tests/train/test_distributed.py in its own process: FSDP2 needs a process group)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import torch
from torch.distributed.checkpoint import FileSystemWriter

from longrecipe.train import checkpoint
from longrecipe.train.checkpoint import Checkpointer, latest_checkpoint, restore
from longrecipe.train.recipe import Dist


def net_and_opt(sharded: bool):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 64))
    if sharded:
        from torch.distributed.fsdp import fully_shard

        fully_shard(net[0])
        fully_shard(net)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    return net, opt, sched


def step(net, opt, sched) -> None:
    loss = net(torch.randn(8, 64)).square().mean()
    loss.backward()
    opt.step()
    sched.step()
    opt.zero_grad()


def full(net) -> dict[str, torch.Tensor]:
    return {k: (v.full_tensor() if hasattr(v, "full_tensor") else v).detach().clone()
            for k, v in net.state_dict().items()}


def hold_writes_until(go: threading.Event) -> None:
    """The files of a save are written only once `go` is set: the steps below surely run before the write."""
    plain, shards = checkpoint._write_plain, FileSystemWriter.write_data

    def write_plain(*args):
        go.wait()
        return plain(*args)

    def write_data(self, *args, **kwargs):
        go.wait()
        return shards(self, *args, **kwargs)

    checkpoint._write_plain, FileSystemWriter.write_data = write_plain, write_data


def main(out: Path, sharded: bool) -> None:
    go = threading.Event()
    hold_writes_until(go)
    if sharded:
        torch.distributed.init_process_group("gloo", init_method=f"file://{out}/pg", rank=0, world_size=1)
    dist = Dist()
    net, opt, sched = net_and_opt(sharded)
    step(net, opt, sched)
    saved = full(net)
    saver = Checkpointer(out, dist, asynchronous=True)
    saver.save(1, net, opt, sched, net if sharded else None)
    for _ in range(20):  # training goes on while the save is written
        step(net, opt, sched)
    assert any(not torch.equal(saved[k], v) for k, v in full(net).items())
    assert latest_checkpoint(out) is None  # not a checkpoint before its files are written
    go.set()
    saver.wait()
    ckpt = latest_checkpoint(out)
    assert ckpt is not None and ckpt.name == "step-00000001", ckpt
    fresh, opt2, sched2 = net_and_opt(sharded)
    assert restore(ckpt, fresh, opt2, sched2, dist, fresh, fsdp=sharded) == 1
    got = full(fresh)
    assert got.keys() == saved.keys() and all(torch.equal(got[k], saved[k]) for k in saved), "not step 1's weights"
    print("ok", len(saved))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] == "fsdp2")
