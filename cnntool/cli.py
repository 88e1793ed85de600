"""The command line: one thin function per subcommand.

Nothing heavy is imported at module level: torch and torchvision are imported inside the bodies of the
commands that run a model, so `--help`, `models` and `shape-calc` start in a fraction of a second.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from cnntool.records import OutputFormat

app = typer.Typer(
    name="cnntool",
    help="The classic CNN image tasks from the command line: classify, localize, landmarks, detect, "
    "verify-face, train, shape-calc.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Shared option types: every predict subcommand spells these the same way.
Inputs = Annotated[List[str], typer.Argument(help="Image files, directories, glob patterns, @list.txt, or - for paths on stdin.", show_default=False)]
ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Registry name (see `cnntool models`). Default: the task's embedded model.", show_default=False)]
WeightsOpt = Annotated[Optional[str], typer.Option("--weights", "-w", help="Weights: a file path, an embedded name, or DEFAULT / a torchvision weights name for torchvision models.", show_default=False)]
FormatOpt = Annotated[Optional[OutputFormat], typer.Option("--format", "-f", help="Output format. Default: table on a terminal, jsonl when piped.", show_default=False)]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per forward pass.")]
WorkersOpt = Annotated[int, typer.Option("--workers", "-j", min=0, help="Decoding processes (0 = decode in the main process).")]
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", min=1, help="Torch intra-op threads (default: torch's choice).", show_default=False)]
SaveOpt = Annotated[Optional[Path], typer.Option("--save", help="Write annotated images into this directory.", show_default=False)]
RecursiveOpt = Annotated[bool, typer.Option("--recursive", "-r", help="Descend into subdirectories.")]
MaxPixelsOpt = Annotated[int, typer.Option("--max-pixels", min=1, help="Refuse images with more pixels than this (decompression-bomb guard).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or warnings on stderr.")]


@app.command("models")
def models_cmd(
    task: Annotated[Optional[str], typer.Option("--task", "-t", help="Only this task's models.", show_default=False)] = None,
    fmt: FormatOpt = None,
) -> None:
    """List the registered models: task, input, classes, parameters and held-out metrics.

    Example: cnntool models --task classify
    """
    from cnntool import catalog_view

    catalog_view.print_models(task=task, fmt=fmt)


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"cnntool: error: {message}", err=True)
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: maps library errors, closed pipes and Ctrl-C to the documented exit codes."""
    import click

    from cnntool.errors import ConfigError
    from cnntool.registry import UnknownModelError

    try:
        code = app(args=argv, prog_name="cnntool", standalone_mode=False)
        raise SystemExit(code if isinstance(code, int) else 0)
    except click.exceptions.Abort:
        # Click turns Ctrl-C into Abort; the shell convention is 128 + SIGINT.
        sys.stderr.write("\n")
        raise SystemExit(130) from None
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        raise SystemExit(130) from None
    except click.exceptions.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(2) from None
    except BrokenPipeError:
        _quiet_broken_pipe()
    except (ConfigError, UnknownModelError) as exc:
        _fail(str(exc))
    except OSError as exc:
        if getattr(exc, "errno", None) == 32:  # EPIPE surfacing as a plain OSError
            _quiet_broken_pipe()
        raise


def _quiet_broken_pipe() -> None:
    """The reader went away (`| head -1`): stop quietly. Point stdout at devnull so the interpreter's final
    flush does not raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    raise SystemExit(0)

