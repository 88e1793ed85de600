"""Start-up time of `cnntool shape-calc`, `cnntool --help` and `cnntool models` against `python -c "import
typer"` and against the floor any typer command pays (a one-option typer app run once); and of a one-image
`cnntool classify` (the embedded digit model) against `python -c "import torch"`: what a call costs beyond
torch itself.

Runs the commands in turn (so load from other processes hits all alike), takes the median of each and
prints the ratios. Bytecode is cached in a temporary directory, as in a normal install, even where
PYTHONDONTWRITEBYTECODE is set; --no-bytecode-cache measures the first-run case instead.

    python bench/startup.py [--runs 20] [--no-bytecode-cache] [--no-classify]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BARE_TYPER_APP = """
import typer
app = typer.Typer()
@app.command()
def one(n: str = "64") -> None:
    print(n)
@app.command()
def two() -> None:
    pass
app()
"""

CNNTOOL = [sys.executable, "-m", "cnntool"]
ONE_DIGIT = Path(__file__).resolve().parent.parent / "examples" / "digits" / "digit0-0-sheet0242.png"
TYPER_COMMANDS = {
    "cnntool shape-calc --n 64 --f 3 --s 2": [*CNNTOOL, "shape-calc", "--n", "64", "--f", "3", "--s", "2", "-q"],
    "cnntool --help": [*CNNTOOL, "--help"],
    "cnntool models": [*CNNTOOL, "models", "--format", "json"],
    "python -c 'import typer'": [sys.executable, "-c", "import typer"],
    "bare typer command, one str option": [sys.executable, "-c", BARE_TYPER_APP, "one", "--n", "64"],
}
TORCH_COMMANDS = {
    "cnntool classify one.png": [*CNNTOOL, "classify", str(ONE_DIGIT), "--format", "jsonl"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
}


def wall_time(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--no-bytecode-cache", action="store_true", help="compile every module on every run")
    parser.add_argument("--no-classify", action="store_true", help="skip the one-image classify vs import torch pair")
    args = parser.parse_args()
    commands = dict(TYPER_COMMANDS) if args.no_classify else {**TYPER_COMMANDS, **TORCH_COMMANDS}

    times: dict[str, list[float]] = {name: [] for name in commands}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ)
        if not args.no_bytecode_cache:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = cache
        for command in commands.values():  # warm the bytecode and page caches first
            wall_time(command, env)
        for _ in range(args.runs):
            for name, command in commands.items():
                times[name].append(wall_time(command, env))

    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, median in medians.items():
        print(f"{name:40s} median {median * 1000:6.0f} ms over {args.runs} runs")
    typer_import, bare = medians["python -c 'import typer'"], medians["bare typer command, one str option"]
    for name in ("cnntool shape-calc --n 64 --f 3 --s 2", "cnntool --help", "cnntool models"):
        print(f"{name:40s} / import typer {medians[name] / typer_import:.2f}   / bare typer command "
              f"{medians[name] / bare:.2f}" + ("   (target ≤ 1.5)" if "shape-calc" in name else ""))
    if not args.no_classify:
        classify, torch_import = medians["cnntool classify one.png"], medians["python -c 'import torch'"]
        print(f"{'cnntool classify one.png':40s} / import torch {classify / torch_import:.2f}   "
              f"(+{(classify - torch_import) * 1000:.0f} ms beyond torch)")

if __name__ == "__main__":
    main()
