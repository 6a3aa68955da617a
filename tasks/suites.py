"""Every suite, registered in the order runs and reports list them. Adding a suite = its file + one line here."""

from longrecipe.tasks import (
    babilong,
    general,
    graphwalks,
    helmet,
    json_kv,
    longbench,
    longbench_v2,
    niah,
    passkey,
    ppl,
    ruler,
)
from longrecipe.tasks.base import REGISTRY, Task, register

SUITES: tuple[Task, ...] = (
    ruler.TASK,
    niah.TASK,
    longbench.TASK,
    longbench.TASK_E,
    longbench_v2.TASK,
    passkey.TASK,
    json_kv.TASK,
    helmet.TASK,
    graphwalks.TASK,
    babilong.TASK,
    ppl.TASK,
    general.TASK,
)
for _task in SUITES:
    register(_task)

__all__ = ["REGISTRY", "SUITES"]
