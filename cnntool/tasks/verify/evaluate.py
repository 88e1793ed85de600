"""`cnntool evaluate verify-face`: ROC AUC, EER and TAR@FAR of an embedding model on labelled pairs, a folder of
identities, or a built-in set whose classes stand in for identities."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnntool.engine.evaluate import report_format_option
from cnntool.errors import ConfigError
from cnntool.options import option
from cnntool.tasks.verify.run import VerifyOptions


@dataclass
class VerifyEvaluation:
    data: str | None = option(None, "--data", "-d", help="A built-in set (fashion-mnist, digits, sklearn-digits) or a "
                              "folder of identities: every pair is scored.")
    pairs: Path | None = option(None, "--pairs", help="Labelled pairs, one a line: A B same|different.")
    identities: str | None = option(None, "--identities", help="Only these classes of a built-in set: 7-9, or names. "
                                    "Default: the weights' unseen identities when the data is the one trained on.")
    format: str = report_format_option()
    verify: VerifyOptions = field(default_factory=VerifyOptions)

    @property
    def report_format(self) -> str:
        return self.format


def evaluate(config: VerifyEvaluation) -> dict[str, Any]:
    """Pairs and identity folders go through verify-face's own path (face detection included); a built-in set
    is scored on every pair of up to 2,000 of its images, by default the identities the weights never trained
    on when the set is the one they were trained on."""
    import numpy as np

    from cnntool.data.classify import BUILTIN, open_classify_data
    from cnntool.preprocess import Preprocessor
    from cnntool.tasks.verify import run as verify
    from cnntool.tasks.verify.losses import all_pair_distances
    from cnntool.tasks.verify.metrics import every_pair, roc_report
    from cnntool.tasks.verify.train import embed_dataset, materialize, parse_identities

    data, pairs, opts = config.data, config.pairs, config.verify
    if (data is None) == (pairs is None):
        raise ConfigError("give exactly one of --data or --pairs")
    loaded = verify.load(opts)
    embedder = verify.Embedder(loaded, opts)
    metrics = [opts.metric] if opts.metric else verify.usable_metrics(loaded)
    if pairs is not None or data not in BUILTIN:
        scores = (verify.score_pairs(verify.read_pairs(pairs), embedder, metrics) if pairs is not None
                  else verify.score_identity_folder(Path(data), embedder, metrics))
        reports = {m: roc_report(scores.distances[m], scores.same) for m in metrics}
        return {"task": "verify-face", "model": loaded.name, "data": scores.description,
                "failed_inputs": scores.failed, "metrics": reports}
    source = open_classify_data(data, loaded.input)
    dataset = materialize(source.test if source.test is not None else source.train)
    meta = loaded.metadata
    chosen = parse_identities(config.identities, source.classes)
    if chosen is None and meta.get("data_source") == data:
        chosen = tuple(meta.get("unseen_identities", ())) or None
    described = f"{source.description}: {'official test split' if source.test is not None else 'all images'}"
    if chosen is not None:
        keep = [i for i, t in enumerate(dataset.targets.tolist()) if source.classes[t] in set(chosen)]
        dataset = dataset.subset(keep)
        described += f", identities {', '.join(chosen)}"
    order = np.random.default_rng(0).permutation(len(dataset))  # the 2,000-image cap then spans all identities
    emb, labels = embed_dataset(loaded.module, Preprocessor(loaded.input).normalize, dataset.subset(order),
                                device=embedder.device)
    head = getattr(loaded.module, "head", None)
    reports = {}
    for m in metrics:
        d, same = every_pair(emb, labels, lambda e: all_pair_distances(e.to(embedder.device), m, head).cpu())
        reports[m] = roc_report(d, same)
    return {"task": "verify-face", "model": loaded.name,
            "data": f"{described}; every pair of up to 2,000 of its {len(dataset)} images", "failed_inputs": [],
            "metrics": reports}


def report_lines(report: dict[str, Any]) -> list[Any]:
    """A calibration or evaluation report as a short table per metric."""
    from rich.markup import escape
    from rich.table import Table

    from cnntool.console import printable

    lines: list[Any] = []
    if report.get("failed_inputs"):
        lines.append(escape(printable(f"{len(report['failed_inputs'])} inputs could not be embedded (left out), e.g. "
                                      f"{report['failed_inputs'][0]}")))
    fars = list(next(iter(report["metrics"].values()))["tar_at_far"])
    table = Table("metric", "pairs (same/diff)", "ROC AUC", "EER", "EER threshold", *[f"TAR@FAR {f}" for f in fars])
    for metric, r in report["metrics"].items():
        table.add_row(metric, f"{r['same_pairs']}/{r['different_pairs']}", f"{r['auc']:.4f}", f"{r['eer']:.4f}",
                      f"{r['eer_threshold']:.4f}", *[f"{r['tar_at_far'][f]['tar']:.4f}" for f in fars])
    lines.append(table)
    if "threshold" in report:
        before = report["before"]
        was = f"{before['threshold']:.4f} ({before['from']})" if before["threshold"] is not None else "none"
        pairs = report["pairs"]
        where = (f"written to {report['written_to']}" if report.get("written_to")
                 else "not written: pass --out FILE.json or --out FILE.safetensors to keep it")
        lines.append(escape(printable(
            f"chosen: {report['metric']} threshold {report['threshold']:.4f} ({report['chosen_at']}, from "
            f"{pairs['same']} same and {pairs['different']} different pairs); before: {before['metric']} {was}; "
            f"{where}")))
    return lines


CONFIG = VerifyEvaluation
