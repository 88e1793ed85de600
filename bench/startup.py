"""Start-up time of `cnntool shape-calc` against `python -c "import typer"`, and against the floor any typer
command pays: a one-option typer app run once (typer coerces option values with pydantic, imported then).

Runs the commands in turn (so load from other processes hits all alike), takes the median of each and
prints the ratios. Bytecode is cached in a temporary directory, as in a normal install, even where
PYTHONDONTWRITEBYTECODE is set; --no-bytecode-cache measures the first-run case instead.

    python bench/startup.py [--runs 20] [--no-bytecode-cache]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

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

COMMANDS = {
    "cnntool shape-calc --n 64 --f 3 --s 2": [sys.executable, "-m", "cnntool", "shape-calc", "--n", "64", "--f", "3",
                                              "--s", "2", "-q"],
    "python -c 'import typer'": [sys.executable, "-c", "import typer"],
    "bare typer command, one str option": [sys.executable, "-c", BARE_TYPER_APP, "one", "--n", "64"],
}


def wall_time(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--no-bytecode-cache", action="store_true", help="compile every module on every run")
    args = parser.parse_args()

    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ)
        if not args.no_bytecode_cache:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = cache
        for command in COMMANDS.values():  # warm the bytecode and page caches first
            wall_time(command, env)
        for _ in range(args.runs):
            for name, command in COMMANDS.items():
                times[name].append(wall_time(command, env))

    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, median in medians.items():
        print(f"{name:40s} median {median * 1000:6.0f} ms over {args.runs} runs")
    shape_calc, typer_import, bare = medians.values()
    print(f"ratio to import typer:       {shape_calc / typer_import:.2f} (target ≤ 1.5)")
    print(f"ratio to a bare typer command: {shape_calc / bare:.2f}")


if __name__ == "__main__":
    main()
