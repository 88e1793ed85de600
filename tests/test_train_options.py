"""Every `cnntool train TASK` command takes the engine's own options and hands them to the engine unchanged
(each command lists them itself, so one left out would go unnoticed)."""

import pytest

from cnntool import train_commands
from cnntool.cli import main

TASKS = ["classify", "detect", "localize", "landmarks", "verify-face"]


@pytest.mark.parametrize("task", TASKS)
def test_every_train_command_hands_the_engine_options_to_the_engine(task, tmp_path, monkeypatch):
    handed = []

    def engine(task_object, cfg, **options):  # classify also hands --ensemble
        handed.append(cfg)
        return 3  # not 0: verify-face would go on to calibrate the weights this stand-in never wrote

    monkeypatch.setattr(train_commands, "_run", engine)
    with pytest.raises(SystemExit) as stop:
        main(["train", task, "--data", str(tmp_path), "--out", str(tmp_path / "w.safetensors"), "--epochs", "3",
              "--batch-size", "5", "--lr", "0.02", "--seed", "7", "--threads", "1", "--ema", "0.99",
              "--channels-last", "--run-dir", str(tmp_path / "run")])
    assert stop.value.code == 3
    (cfg,) = handed
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.seed, cfg.threads, cfg.ema, cfg.channels_last, cfg.run_dir) == (
        3, 5, 0.02, 7, 1, 0.99, True, tmp_path / "run")
