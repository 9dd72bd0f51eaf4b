"""Both tasks recorded: a checkpoint keeps the task it was trained for, and evaluating it on the
other task (Target-CPA vs Max-Return) is refused in one line naming both tasks and the checkpoint."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from aigb.algos.checkpoint import atomic_torch_save, checkpoint_task, read_checkpoint  # noqa: E402
from aigb.algos.registry import make_algorithm  # noqa: E402
from aigb.data.generate import generate_dataset  # noqa: E402
from aigb.eval.evaluate import evaluate  # noqa: E402
from aigb.workflows.oil import LabelledStates  # noqa: E402
from aigb.workflows.training import train  # noqa: E402
from aigb.score import TASKS  # noqa: E402
from aigb.strategies.registry import make_strategy  # noqa: E402
from aigb.types import ConfigError, MarketConfig  # noqa: E402

SMALL = MarketConfig(n_pv=3000, n_advertisers=8)
OTHER = {"cpa": "max-return", "max-return": "cpa"}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """task -> a BC checkpoint trained (2 updates) on a one-period dataset generated for that task."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        root = tmp_path_factory.mktemp("tasks")
        out = {}
        for task in TASKS:
            generate_dataset(root / task, 1, 5, market=SMALL, progress=False, task=task)
            train("bc", root / task, run_dir=root / f"bc-{task}", steps=2, batch_size=32, validation=None, progress=False)
            out[task] = root / f"bc-{task}" / "best.pt"
    finally:
        torch.set_num_threads(n)
    return out


def _play(specs, task):
    return evaluate(specs, periods=1, slots=[2], seeds=(0,), market=SMALL, progress=False, task=task)


@pytest.mark.parametrize("task", TASKS)
def test_a_checkpoint_records_the_task_of_its_dataset(checkpoints, task):
    payload = read_checkpoint(checkpoints[task])
    assert payload["task"] == task and checkpoint_task(payload) == task
    assert make_strategy(f"bc:{checkpoints[task]}").trained_for == (task, f"checkpoint {checkpoints[task]}")


@pytest.mark.parametrize("task", TASKS)
def test_evaluating_on_the_other_task_is_refused_naming_both_tasks_and_the_checkpoint(checkpoints, task):
    other = OTHER[task]
    with pytest.raises(ConfigError) as err:
        _play(["fixed", f"bc:{checkpoints[task]}"], other)
    message = str(err.value)
    assert "\n" not in message
    assert f"trained for the {task} task" in message and f"not {other};" in message
    assert f"(checkpoint {checkpoints[task]})" in message


def test_the_same_task_plays_and_rules_play_either(checkpoints):
    for task in TASKS:
        table = _play(["fixed", f"bc:{checkpoints[task]}"], task).table
        assert table.column("error").to_pylist() == [None, None]
    assert make_strategy("fixed").trained_for is None


def test_a_checkpoint_that_records_no_task_plays_either_task(checkpoints, tmp_path):
    payload = read_checkpoint(checkpoints["max-return"])
    del payload["task"]
    del payload["algorithm"]["task"]
    legacy = atomic_torch_save(payload, tmp_path / "legacy.pt")
    assert checkpoint_task(read_checkpoint(legacy)) is None
    assert make_strategy(f"bc:{legacy}").trained_for is None
    assert _play([f"bc:{legacy}"], "cpa").table.column("error").to_pylist() == [None]


def test_oil_records_the_task_its_oracle_labelled_for():
    obs = np.random.default_rng(0).normal(size=(16, 28)).astype(np.float32)
    algo = make_algorithm("oil", 28, {}, seed=0)
    algo.prepare(LabelledStates(obs, np.zeros(16, np.float32), "max-return"), 0)
    assert algo.task == "max-return" and algo.state_dict(with_optimizers=False)["task"] == "max-return"
    with pytest.raises(ConfigError, match="task"):
        LabelledStates(obs, np.zeros(16, np.float32), "roas")
