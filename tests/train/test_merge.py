"""The weight merge (train/merge.py): the weighted average by hand."""

from __future__ import annotations

import pytest
import torch
from helpers import cli
from safetensors.torch import load_file


def test_merge_arithmetic(tmp_path, tiny_dir):
    from longrecipe.train.merge import merge_models

    a = load_file(str(tiny_dir / "model.safetensors"))
    other = tmp_path / "other"
    other.mkdir()
    for f in tiny_dir.iterdir():
        if f.is_file():
            (other / f.name).write_bytes(f.read_bytes())
    from safetensors.torch import save_file

    b = {k: v * 3 + 1 for k, v in a.items()}
    save_file(b, str(other / "model.safetensors"))
    res = cli("merge", str(other), "tiny", "--weights", "0.25", "0.75", "--out", str(tmp_path / "m"))
    assert res.returncode == 0, res.stderr
    m = load_file(str(tmp_path / "m" / "model.safetensors"))
    for k in a:  # 0.25 * (3a + 1) + 0.75 * a = 1.5 a + 0.25
        assert torch.allclose(m[k], 1.5 * a[k] + 0.25, atol=1e-6)
    with pytest.raises(ValueError, match="sum to"):
        merge_models([str(other), "tiny"], [0.5, 0.6], tmp_path / "x")
