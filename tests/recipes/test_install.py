"""Every documented way to install the project gives a working command: setuptools' default editable mode, strict
editable mode, a regular install, and a built wheel installed into a fresh environment, each then running
`longrecipe eval` on the embedded tiny model from a folder outside the checkout.

The fresh environments have no pip and no packages of their own: a .pth line lends them this environment's
site-packages (torch, transformers, ...) so that only the project itself is installed anew, by this environment's
pip (`pip --python`). A .pth line adds a folder without running its own .pth files, so this environment's
editable install of the project is not seen there.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from helpers import ROOT

MODES = {
    "editable": ["-e", "{src}"],
    "editable-strict": ["-e", "{src}", "--config-settings", "editable_mode=strict"],
    "regular": ["{src}"],
    "wheel": ["{wheel}"],
}

@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A copy of the checkout's tracked files (editable installs write build files next to their source)."""
    src = tmp_path_factory.mktemp("src") / "longrecipe"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.splitlines()
    for name in files:
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    return src

def _pip(python: Path, *args: str) -> None:
    res = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                          "--no-build-isolation", "--no-index", *args], capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stderr[-3000:]


@pytest.mark.integration
@pytest.mark.parametrize("mode", list(MODES))
def test_install_mode_gives_a_working_cli(tmp_path, source, mode):
    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "_borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = ""
    if mode == "wheel":
        dist = tmp_path / "dist"
        res = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                              "-w", str(dist), str(source)], capture_output=True, text=True, timeout=1800)
        assert res.returncode == 0, res.stderr[-3000:]
        (wheel,) = (str(p) for p in dist.glob("*.whl"))
    _pip(python, *(a.format(src=source, wheel=wheel) for a in MODES[mode]))
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = subprocess.run([str(python), "-c", "import longrecipe.evaluate.runner as r; print(r.__file__)"],
                           cwd=work, capture_output=True, text=True)
    assert where.returncode == 0, where.stderr[-2000:]
    assert not where.stdout.startswith(str(ROOT)), where.stdout  # the installed copy, not this checkout
    both = subprocess.run([str(python), "-c", "from longrecipe.base import model_dirs; "
                           "print(model_dirs.resolve('tiny'), model_dirs.resolve('tiny-v2'))"], cwd=work,
                          capture_output=True, text=True)
    assert both.returncode == 0, both.stderr[-2000:]  # both embedded models ship (package data)
    res = subprocess.run([str(env_dir / "bin" / "longrecipe"), "eval", "--model", "tiny", "--suite", "passkey",
                          "--lengths", "256", "--samples", "2", "--out", str(work / "run")], cwd=work,
                         capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = json.loads((work / "run" / "results.json").read_text())["scores"]
    assert [(r["suite"], r["context_length"], r["n"]) for r in rows] == [("passkey", 256, 2)]
