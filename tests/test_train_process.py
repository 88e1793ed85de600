"""The engine as separate processes: SIGTERM writes a checkpoint and exits 143; two torchrun processes
(DDP over gloo on CPU) end with identical weights."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from train_helpers import tiny_idx

from cnntool import weights


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(__file__), env.get("PYTHONPATH", "")])
    return env


def test_sigterm_writes_a_checkpoint_then_exits_143(tmp_path):
    data = tiny_idx(tmp_path)
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "cnntool", "train", "classify", "--data", str(data), "--model", "lenet5-relu",
           "--input-size", "16", "--epochs", "100000", "--batch-size", "8", "--threads", "1",
           "--out", str(tmp_path / "w.safetensors"), "--run-dir", str(run_dir), "-q"]
    proc = subprocess.Popen(cmd, env=_env(), stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "last.safetensors").exists():  # written after the first epoch
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 143
    finally:
        proc.kill()
    progress = weights.read_metadata(run_dir / "last.safetensors")["progress"]
    assert progress["epoch"] >= 1
    assert not (tmp_path / "w.safetensors").exists()


DDP_SCRIPT = textwrap.dedent("""
    import sys, torch
    from pathlib import Path
    from train_helpers import tiny_config, tiny_task
    from cnntool import weights
    from cnntool.augment import AugmentConfig
    from cnntool.engine.train import Trainer
    tmp, data = Path(sys.argv[1]), Path(sys.argv[2])
    trainer = Trainer(tiny_task(data, augment=AugmentConfig(crop_pad=1)), tiny_config(tmp, "ddp"))
    trainer.run()
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else int(__import__("os").environ["RANK"])
    weights.save(tmp / f"rank{rank}.safetensors", trainer.model.state_dict(), {})
""")


@pytest.mark.slow  # two fresh interpreters importing torch: ~90 s on a busy 2-core machine
def test_ddp_two_processes_end_with_identical_weights(tmp_path):
    data = tiny_idx(tmp_path)
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), str(tmp_path), str(data)]
    done = subprocess.run(cmd, env=_env(), capture_output=True, timeout=240)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    a, b = (weights.load(tmp_path / f"rank{r}.safetensors")[0] for r in (0, 1))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "ddp.safetensors").is_file()
