"""Every `cnntool train TASK` command takes the engine's own options and hands them to its task unchanged."""

import pytest

from cnntool import tasks
from cnntool.cli import main

TASKS = ["classify", "detect", "localize", "landmarks", "verify-face"]


@pytest.mark.parametrize("task", TASKS)
def test_every_train_command_hands_the_engine_options_to_the_engine(task, tmp_path, monkeypatch):
    handed = []

    def train(config, engine):
        handed.append(engine)
        raise SystemExit(3)

    monkeypatch.setattr(tasks.get(task), "train", train)
    with pytest.raises(SystemExit) as stop:
        main(["train", task, "--data", str(tmp_path), "--out", str(tmp_path / "w.safetensors"), "--epochs", "3",
              "--batch-size", "5", "--lr", "0.02", "--seed", "7", "--threads", "1", "--ema", "0.99",
              "--channels-last", "--run-dir", str(tmp_path / "run")])
    assert stop.value.code == 3
    (cfg,) = handed
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.seed, cfg.threads, cfg.ema, cfg.channels_last, cfg.run_dir) == (
        3, 5, 0.02, 7, 1, 0.99, True, tmp_path / "run")
    assert cfg.command.startswith(f"cnntool train {task} --data")
