"""The command line: one thin function per subcommand.

Each command names the configs it takes; their fields declare its options (cnntool.command). The predict,
train and evaluate commands of every task come from that task's folder (cnntool.tasks). Nothing heavy is
imported at module level, and only the command being run is built, so `--help`, `models` and `shape-calc`
start without torch.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Annotated, Any, Callable, List

import typer
from typer.core import TyperGroup

_SETTINGS = {"no_args_is_help": True, "context_settings": {"help_option_names": ["-h", "--help"]}}
_APP_SETTINGS = dict(
    name="cnntool",
    help="The classic CNN image tasks from the command line: classify, localize, landmarks, detect, "
    "verify-face, train, shape-calc.",
    pretty_exceptions_enable=False,
    **_SETTINGS,
)

Inputs = Annotated[List[str], typer.Argument(help="Image files, directories, glob patterns, @list.txt, or - for paths "
                                             "on stdin.", show_default=False)]
PREDICT_TASKS = ("classify", "detect", "localize", "landmarks")
TRAINED_TASKS = ("classify", "detect", "localize", "landmarks", "verify-face")


def _task(name: str):
    from cnntool import tasks

    return tasks.get(name)


def _engine_skip(task_config: type, engine: type) -> tuple[str, ...]:
    """Engine options a task's own config declares under the same name (verify-face's --init)."""
    import dataclasses

    own = {f.name for f in dataclasses.fields(task_config)}
    return tuple(f.name for f in dataclasses.fields(engine) if f.name in own)


# --- commands ---------------------------------------------------------------------------------------------
# Each adds one command to a Typer app; `_app_for` calls only those the command line needs.

MODELS_DOC = ("List the registered models: task, input, classes, parameters and held-out metrics.\n\n"
              "Example: cnntool models --task classify")
ENSEMBLE_DOC = (
    "Average trained classifiers or localizers of one architecture into one weights file (ensembling), scored "
    "on held-out data.\n\n"
    "Example: cnntool ensemble a.safetensors b.safetensors c.safetensors --data runs/data/scenes --out "
    "abc.safetensors\n\n"
    "Another reader for an ensemble: cnntool ensemble localizer-digits --reader r.safetensors --data "
    "runs/data/scenes --out new.safetensors\n\n"
    "Its threshold chosen again (reader kept): cnntool ensemble localizer-digits --calibrate --data "
    "runs/data/scenes-unseen --out new.safetensors")


def _models(app: typer.Typer) -> None:
    from cnntool.cards import ModelsQuery, print_models
    from cnntool.command import command

    app.command("models")(command(print_models, ModelsQuery, doc=MODELS_DOC))


def _shape_calc(app: typer.Typer) -> None:
    from cnntool.command import command
    from cnntool.shapecalc import view

    app.command("shape-calc")(command(view.run, view.ShapeQuery, doc=view.HELP))


def _predict(name: str) -> Callable[[typer.Typer], None]:
    def add(app: typer.Typer) -> None:
        from cnntool.command import Uses, command
        from cnntool.engine import predict

        task = _task(name)

        def run(options: Any, run: predict.RunOptions, *, inputs: list[str]) -> None:
            run.task_options = vars(options)
            with _quiet_on_closed_pipe():
                raise typer.Exit(predict.run(task, inputs, run, after_each=task.after_each(options, quiet=run.quiet)))

        run.__name__ = name
        app.command(name)(command(run, task.options, Uses(predict.RunOptions, task.predict_skip, task.predict_defaults),
                                  doc=task.docs["predict"] + _default_model(task.name), extra={"inputs": Inputs}))
    return add


def _default_model(task: str) -> str:
    """The help's last paragraph: which model runs without --model, and what it was trained on."""
    from cnntool.models import catalog

    name = catalog.REGISTRY.default(task)
    return f"\n\nDefault model: {name}: {catalog.get(name).summary}. Others: cnntool models --task {task}."


def _train(name: str) -> Callable[[typer.Typer], None]:
    def add(app: typer.Typer) -> None:
        from cnntool.command import Uses, command, command_line
        from cnntool.engine.train import TrainConfig, TrainingInterrupted

        task = _task(name)

        def train(config: Any, engine: TrainConfig, *, ctx: typer.Context) -> None:
            from cnntool.console import warn
            from cnntool.folders import input_paths, refuse_overwriting

            refuse_overwriting(engine.outputs(), input_paths(config, engine.init))
            engine.command = command_line(ctx)
            try:
                task.train(config, engine)
            except TrainingInterrupted as exc:
                warn(str(exc), quiet=engine.quiet)
                raise typer.Exit(exc.exit_code) from None

        skip = _engine_skip(task.train_config, TrainConfig)
        layout = f"\n\nData layout: docs/data.md; `cnntool data example {name} --out DIR` writes a small one."
        app.command(name)(command(train, task.train_config, Uses(TrainConfig, skip, task.train_defaults),
                                  doc=task.docs["train"] + layout, context=True))
    return add


def _train_domain(app: typer.Typer) -> None:
    from cnntool.command import command, command_line
    from cnntool.engine import domain

    def fit(config: domain.DomainConfig, *, ctx: typer.Context) -> None:
        from cnntool.folders import input_paths, refuse_overwriting

        from cnntool import tasks, weights

        refuse_overwriting({"--out": config.out}, input_paths(config.weights))
        task = tasks.get(weights.read_metadata(weights.resolve(config.weights)).get("task", "classify"))
        domain.fit(config, task, command=command_line(ctx))

    app.command("domain")(command(fit, domain.DomainConfig, context=True, doc=(
        "Give a trained classifier a domain check: a small gate, trained on its training images against photo "
        "crops, that withholds the answer for an image unlike them (record: in_domain false, label null).\n\n"
        "Example: cnntool train domain --weights mine.safetensors --data digits --out mine-checked.safetensors")))


def _evaluate(name: str) -> Callable[[typer.Typer], None]:
    def add(app: typer.Typer) -> None:
        from cnntool.command import Uses, command

        task = _task(name)

        def evaluate(config: Any) -> None:
            task.write_report(task.evaluate(config), config.report_format)

        app.command(name)(command(evaluate, Uses(task.evaluate_config, task.evaluate_skip, task.evaluate_defaults),
                                  doc=task.docs["evaluate"]))
    return add


class _CompareByDefault(TyperGroup):
    """`cnntool verify-face A B` means `cnntool verify-face compare A B`: anything that is not a
    subcommand name (or help) is handed to compare."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["compare", *args]
        return super().parse_args(ctx, args)


def _verify_compare(app: typer.Typer) -> None:
    from cnntool.command import command
    from cnntool.tasks.verify import run as verify

    def compare(opts: verify.VerifyOptions, *, inputs: list[str]) -> None:
        with _quiet_on_closed_pipe():
            raise typer.Exit(verify.run(inputs, opts))

    app.command("compare")(command(compare, verify.VerifyOptions, extra={"inputs": Inputs}, doc=(
        "1:1: is the face in A the same person as in B (and C, …)? 1:N with --gallery: who is it?\n\n"
        "Example: cnntool verify-face alice.jpg who.jpg\n\n"
        "Example: cnntool verify-face --gallery people/ photos/*.jpg --format jsonl" + _default_model("verify-face"))))


def _verify_calibrate(app: typer.Typer) -> None:
    from cnntool.command import Uses, command
    from cnntool.tasks.verify import run as verify

    def calibrate(config: verify.CalibrationConfig, opts: verify.VerifyOptions) -> None:
        from cnntool.folders import input_paths, refuse_overwriting

        refuse_overwriting({"--out": config.out}, input_paths(config.pairs, config.data, opts))
        _task("verify-face").write_report(verify.calibrate(opts, config), config.format)

    skip = ("gallery", "gallery_cache", "threshold", "calibration", "format", "recursive", "quiet")
    app.command("calibrate")(command(calibrate, verify.CalibrationConfig, Uses(verify.VerifyOptions, skip), doc=(
        "ROC AUC, EER and TAR@FAR from labelled pairs or identity folders; writes the chosen threshold so later "
        "runs use it.\n\nExample: cnntool verify-face calibrate --data people/ --choose far --far 0.001")))


def _verify_cluster(app: typer.Typer) -> None:
    from cnntool.command import Uses, command
    from cnntool.tasks.verify import cluster, run as verify

    def group(config: cluster.ClusterConfig, opts: verify.VerifyOptions, *, inputs: list[str]) -> None:
        with _quiet_on_closed_pipe():
            raise typer.Exit(cluster.run(inputs, opts, config))

    app.command("cluster")(command(group, cluster.ClusterConfig, Uses(verify.VerifyOptions, cluster.SKIP),
                                   extra={"inputs": Inputs}, doc=cluster.DOC))


def _ensemble(app: typer.Typer) -> None:
    from cnntool.command import command, command_line
    from cnntool.engine import combine

    def ensemble(config: combine.EnsembleConfig, *, ctx: typer.Context) -> None:
        from cnntool import weights
        from cnntool.console import warn
        from cnntool.folders import input_paths, refuse_overwriting

        members = [weights.resolve(m) for m in config.members]
        refuse_overwriting({"--out": config.out}, input_paths(members, config.data, config.reader))

        meta = combine.combine(_task(combine.task_of(config.members)), config, command=command_line(ctx))
        figures = ", ".join(f"{k} {v:.4f}" for k, v in meta["metrics"]["heldout"].items()
                            if isinstance(v, float) and k != "loss")
        warn(f"ensemble of {meta['ensemble']}: held-out {figures} → {config.out}")

    app.command("ensemble")(command(ensemble, combine.EnsembleConfig, context=True, doc=ENSEMBLE_DOC))


EXPORT_DOC = ("A model as ONNX or TorchScript, for runtimes without cnntool; FILE.json beside it says how an image "
              "becomes its input.\n\nExample: cnntool export lenet5-digits --format onnx --out lenet5-digits.onnx")


def _export(app: typer.Typer) -> None:
    from cnntool.command import command
    from cnntool.engine import export

    def run(config: export.ExportConfig) -> None:
        from cnntool import weights
        from cnntool.console import warn
        from cnntool.folders import input_paths, refuse_overwriting

        refuse_overwriting({"--out": config.out}, input_paths(config.model, weights.weights_dir() / config.model))
        described = export.export(config)
        warn(f"wrote {config.out} ({described['format']}) and {config.out}.json", quiet=config.quiet)

    app.command("export")(command(run, export.ExportConfig, doc=EXPORT_DOC))


def _data_commands() -> dict[str, Callable[[typer.Typer], None]]:
    from cnntool import cli_data

    return cli_data.COMMANDS


# name → (help, adds the command) for top-level commands; groups list their subcommands the same way.
COMMANDS: dict[str, Callable[[typer.Typer], None]] = {
    "models": _models, "shape-calc": _shape_calc, **{name: _predict(name) for name in PREDICT_TASKS},
    "ensemble": _ensemble, "export": _export,
}
GROUPS: dict[str, tuple[str, dict[str, Callable[[typer.Typer], None]], dict[str, Any]]] = {
    "train": ("Train a model: cnntool train classify --data fashion-mnist …",
              {**{name: _train(name) for name in TRAINED_TASKS}, "domain": _train_domain}, {}),
    "evaluate": ("Evaluate a model: cnntool evaluate classify --data digits …",
                 {name: _evaluate(name) for name in TRAINED_TASKS}, {}),
    "verify-face": ("Same person or not (A B), who is it (--gallery DIR), group faces by person (cluster DIR), "
                    "calibrate the threshold.", {"compare": _verify_compare, "calibrate": _verify_calibrate,
                                                 "cluster": _verify_cluster}, {"cls": _CompareByDefault}),
    "data": ("Generate data sets: cnntool data scenes --out DIR …",
             _data_commands(), {}),
}
ORDER = ("models", "shape-calc", "classify", "detect", "train", "evaluate", "verify-face", "localize", "landmarks",
         "ensemble", "export", "data")


def _short_help(name: str) -> str:
    """A command's first help line, without building the command."""
    if name in GROUPS:
        return GROUPS[name][0]
    if name in PREDICT_TASKS:
        return _task(name).docs["predict"]
    if name == "shape-calc":
        from cnntool.shapecalc.view import HELP

        return HELP
    return {"models": MODELS_DOC, "ensemble": ENSEMBLE_DOC, "export": EXPORT_DOC}[name]


def _overview() -> typer.Typer:
    """The top-level help (and the answer to an unknown command): every command's name and first line, none
    of them built."""
    app = typer.Typer(**_APP_SETTINGS)
    for name in ORDER:
        first = _short_help(name).split("\n\n")[0]
        if name in GROUPS:
            app.add_typer(typer.Typer(**_SETTINGS), name=name, help=first)
        else:
            app.command(name, help=first)(_no_group_options)
    app.callback()(_top_options)
    return app


def _app_for(args: list[str], *, whole: bool = False) -> typer.Typer:
    """The app holding only the command being run: Typer converts the signature of every command it holds on
    each run, and building one keeps start-up near `import typer`. `whole`: every command, built."""
    words = [a for a in args if not a.startswith("-")]
    name = words[0] if words else None
    if not whole and name not in COMMANDS and name not in GROUPS:
        return _overview()
    app = typer.Typer(**_APP_SETTINGS)
    wanted = list(ORDER) if whole else [name]
    for command in wanted:
        if command in COMMANDS:
            COMMANDS[command](app)
            continue
        help_text, subcommands, settings = GROUPS[command]
        group = typer.Typer(help=help_text, **_SETTINGS, **settings)
        sub = words[1] if len(words) > 1 and command == name else None
        for sub_name in [sub] if sub in subcommands else list(subcommands):
            subcommands[sub_name](group)
        app.add_typer(group, name=command, help=help_text)
    app.callback()(_top_options)  # a group still with one command, so `cnntool NAME …` parses as the full app
    return app


def _show_version(shown: bool) -> None:
    if shown:
        from cnntool import version

        typer.echo(f"cnntool {version()}")
        raise typer.Exit()


def _top_options(version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_show_version,
                                                       help="Print the version and exit.")] = False) -> None:
    pass


def _no_group_options() -> None:
    pass


def _fail(message: str, code: int = 2) -> None:
    from cnntool.console import printable

    typer.echo(f"cnntool: error: {printable(message)}", err=True)
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: maps usage and library errors to exit 2 with one line. (Typer itself maps
    Ctrl-C to 130; a closed pipe ends a run quietly.)"""
    from cnntool.errors import ConfigError
    from cnntool.registry import UnknownModelError

    args = sys.argv[1:] if argv is None else list(argv)
    completing = "_CNNTOOL_COMPLETE" in os.environ  # the shell asks what may follow: it needs every command
    try:
        code = _app_for(args, whole=completing)(args=args, prog_name="cnntool", standalone_mode=False)
    except typer.Abort:
        raise SystemExit(130) from None
    except typer.TyperException as exc:  # click's usage errors, as vendored by typer
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            typer.echo(f"cnntool: error: {exc}", err=True)
        raise SystemExit(getattr(exc, "exit_code", 2)) from None
    except (ConfigError, UnknownModelError) as exc:
        _fail(str(exc))
    except BrokenPipeError:
        _quiet_broken_pipe()
    except OSError as exc:  # a full or failing disk: one line, and no second traceback from the final flush
        where = f"{exc.filename}: " if exc.filename else ""
        _discard_stdout()
        _fail(f"{where}{exc.strerror or exc}", code=1)
    raise SystemExit(code if isinstance(code, int) else 0)


@contextlib.contextmanager
def _quiet_on_closed_pipe():
    """Records stream to a reader that may go away (`| head -1`); click would turn that into exit 1."""
    try:
        yield
    except BrokenPipeError:
        _quiet_broken_pipe()


def _quiet_broken_pipe() -> None:
    """The reader went away (`| head -1`): stop quietly."""
    _discard_stdout()
    raise SystemExit(0)


def _discard_stdout() -> None:
    """Point stdout at devnull so the interpreter's final flush does not raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def __getattr__(name: str) -> Any:
    """`cnntool.cli.app`: the whole app, built on first use, for tests and tools that inspect it (the entry
    point builds only the command it runs)."""
    if name == "app":
        return _app_for([], whole=True)
    raise AttributeError(name)
