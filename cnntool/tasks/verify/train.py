"""Verification (one-shot identity) as a training task for the engine (cnntool.engine.train; interface:
cnntool.engine.task.Trainable).

Data are identities: the classes of a class-per-folder tree (one folder per person) or of a built-in set
(there a class stands in for an identity). Some identities are held out entirely ("unseen"): the held-out
figures are verification on identities the network never saw, which is what one-shot use needs. Training
batches are P×K: P identities, K images each, so every batch holds positives for online mining.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from cnntool.augment import AugmentConfig, erase, warp
from cnntool.data.classify import data_option, open_classify_data
from cnntool.data.splits import stratified_split, val_split_option
from cnntool.engine.task import TaskData
from cnntool.errors import ConfigError
from cnntool.meta import as_json
from cnntool.models import catalog
from cnntool.options import channels_option, input_size_option, kwargs_option, option
from cnntool.tasks.verify import losses as verify
from cnntool.tasks.verify.metrics import VerifyMetrics

if TYPE_CHECKING:
    import torch

EMBEDDING_MODEL = "embedding-net"  # the registry entry whose builder wraps any backbone


@dataclass
class VerifyConfig:
    data: str = data_option()
    backbone: str = option("resnet-small", "--model", "-m", help="Backbone: any classify registry name; its last fc "
                           "becomes the embedding layer.")
    backbone_kwargs: dict[str, Any] = kwargs_option("Backbone builder override key=value (JSON values), repeatable.")
    objective: str = option("triplet", "--objective", help="triplet, contrastive (Siamese pairs) or similarity "
                            "(learned head σ(Σ w|f_i−f_j| + b)).")
    mining: str = option("batch-hard", "--mining", help="Triplet mining in each P×K batch: batch-hard, batch-all or "
                         "semi-hard.")
    # default: 0.2 for triplet (squared distances), 1.0 for contrastive
    margin: float | None = option(None, "--margin", help="α of the triplet loss (default 0.2) or m of the "
                                  "contrastive loss (default 1.0).")
    dim: int = option(64, "--dim", min=2, help="Embedding size.")
    k_per_identity: int = option(8, "--k-per-identity", min=2, help="K images per identity in a batch (P = batch "
                                 "size / K).")
    # identities held out of training ("7-9", "alice,bob"); None: a seeded 20%
    unseen: str | None = option(None, "--unseen", help="Identities held out of training, evaluated as never seen: "
                                "names or indices, 7-9 or alice,bob. Default: a seeded 20%.")
    init: str | None = option(None, "--init", help="Fine-tune: start the backbone from a trained classifier's weights "
                              "(all but its last fc).")
    input_size: tuple[int, int] | None = input_size_option()
    channels: int | None = channels_option("the backbone's")
    cross_source: str | None = option(None, "--cross-source", help="Another dataset, all identities unseen, to report "
                                      "on (never trained on).")
    val_split: float = val_split_option()
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.objective not in verify.OBJECTIVES:
            raise ConfigError(f"objective must be one of {', '.join(verify.OBJECTIVES)}, not {self.objective!r}")
        if self.mining not in verify.MINING:
            raise ConfigError(f"mining must be one of {', '.join(verify.MINING)}, not {self.mining!r}")
        if self.k_per_identity < 2:
            raise ConfigError("--k-per-identity must be at least 2 (an identity needs a positive pair)")
        if self.margin is None:
            self.margin = 0.2 if self.objective == "triplet" else 1.0

    @property
    def metric(self) -> str:
        """The distance the model is trained for and reports by default."""
        return "learned" if self.objective == "similarity" else "euclidean"


class PKBatches:
    """Training items whose batches are P identities × K images. The engine hands in a random index
    batch; its first P distinct identities are taken and K images of each drawn with a generator seeded
    by those indices, so a run (and a resumed run) is repeatable."""

    def __init__(self, images: "torch.Tensor", targets: "torch.Tensor", k: int) -> None:
        import torch

        self.images, self.targets, self.k = images, targets, k
        self.by_identity = {int(c): (targets == c).nonzero(as_tuple=True)[0] for c in torch.unique(targets)}

    def __len__(self) -> int:
        return len(self.targets)

    def labels(self) -> np.ndarray:
        return self.targets.numpy()

    def batch(self, indices: "torch.Tensor"):
        import torch

        p = max(len(indices) // self.k, 2)
        chosen: list[int] = []
        for c in self.targets[indices].tolist():
            if c not in chosen:
                chosen.append(c)
            if len(chosen) == p:
                break
        if len(chosen) < 2:  # a tail batch of one identity: add another so negatives exist
            chosen.append(next(c for c in self.by_identity if c != chosen[0]))
        g = torch.Generator().manual_seed(int(indices[0]) * 1_000_003 + len(indices))
        picks = []
        for c in chosen:
            pool = self.by_identity[c]
            order = torch.randperm(len(pool), generator=g)
            picks.append(pool[order.repeat(self.k // len(pool) + 1)[:self.k]])
        idx = torch.cat(picks)
        return self.images[idx], self.targets[idx]


def parse_identities(text: str | None, classes: Sequence[str]) -> tuple[str, ...] | None:
    """'7,8,9', '7-9' (indices) or names → identity names; None stays None."""
    if text is None:
        return None
    names: list[str] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        lo, dash, hi = part.partition("-")
        if dash and lo.isdigit() and hi.isdigit():
            names += [_identity(str(i), classes) for i in range(int(lo), int(hi) + 1)]
        else:
            names.append(_identity(part, classes))
    return tuple(names)


def _identity(token: str, classes: Sequence[str]) -> str:
    if token in classes:
        return token
    if token.isdigit() and int(token) < len(classes):
        return classes[int(token)]
    raise ConfigError(f"unknown identity {token!r}; identities are {', '.join(classes)} (names or indices)")


class VerifyTask:
    name = "verify-face"
    tta_key = None

    def __init__(self, cfg: VerifyConfig) -> None:
        self.cfg = cfg
        self.backbone = catalog.get(cfg.backbone, task="classify")
        self.input = self.backbone.input.adapted(size=cfg.input_size, channels=cfg.channels, mean=cfg.mean,
                                                 std=cfg.std)
        self.seen: tuple[str, ...] = ()
        self.unseen: tuple[str, ...] = ()
        self.data_description = ""
        self.module = None
        self.val = None

    # --- data ---------------------------------------------------------------------------------------

    def prepare(self, seed: int) -> TaskData:
        data = open_classify_data(self.cfg.data, self.input)
        classes = data.classes
        unseen = parse_identities(self.cfg.unseen, classes)
        if unseen is None:
            unseen = self._random_unseen(classes, seed)
        elif len(set(unseen)) == 1:
            raise ConfigError("--unseen needs at least two identities: pairs across them are the different pairs")
        if len(classes) - len(set(unseen)) < 2:
            raise ConfigError(f"training needs at least two identities that are not held out (the data has "
                              f"{len(classes)})")
        self.unseen = tuple(c for c in classes if c in set(unseen))
        self.seen = tuple(c for c in classes if c not in set(unseen))
        seen_idx = [classes.index(c) for c in self.seen]
        unseen_idx = [classes.index(c) for c in self.unseen]
        train_all = materialize(data.train)
        in_seen = np.isin(train_all.targets.numpy(), seen_idx)
        seen_part = train_all.subset(np.nonzero(in_seen)[0])
        train_i, val_i = stratified_split(seen_part.labels(), self.cfg.val_split, seed, least=2)
        # Shuffled once so every evaluation batch mixes identities (the per-batch AUC needs both kinds of pair).
        val_i = np.asarray(val_i)[np.random.default_rng(seed).permutation(len(val_i))]
        train = seen_part.subset(train_i)
        self.val = seen_part.subset(val_i)
        _check_pairs(self.val.labels(), "the validation split (--val-split of each training identity)")
        self.data_description = (f"{data.description}; trained on identities {', '.join(self.seen)} "
                                 f"({len(train)} images), validation {len(self.val)} other images of them")
        batches = PKBatches(train.images, train.targets, self.cfg.k_per_identity)
        if not self.unseen:  # too few identities to hold any out: the figures are validation figures
            described = (f"validation (no identity held out: {len(classes)} identities): {len(self.val)} images "
                         "of the training identities, never trained on")
            return TaskData(batches, self.val, self.val, described, False)
        source = materialize(data.test) if data.test is not None else train_all
        where = "official test split" if data.test is not None else "all images"
        held_i = np.nonzero(np.isin(source.targets.numpy(), unseen_idx))[0]
        held_i = held_i[np.random.default_rng(seed + 1).permutation(len(held_i))]
        heldout = source.subset(held_i)
        _check_pairs(heldout.labels(), f"the held-out identities ({', '.join(self.unseen)})")
        described = (f"{data.description}: {where}, the {len(heldout)} images of identities never trained on: "
                     f"{', '.join(self.unseen)}; every pair of up to 2,000 of them")
        return TaskData(batches, self.val, heldout, described, True)

    @staticmethod
    def _random_unseen(classes: Sequence[str], seed: int) -> tuple[str, ...]:
        """A fifth of the identities, at least two (their cross pairs are the different pairs), none when fewer
        than four: two must stay to train on."""
        if len(classes) < 4:
            return ()
        count = min(max(2, round(0.2 * len(classes))), len(classes) - 2)
        pick = np.random.default_rng(seed).choice(len(classes), size=count, replace=False)
        return tuple(classes[i] for i in sorted(pick))

    def extra_evaluations(self) -> list[tuple[str, Any, str]]:
        if not self.cfg.cross_source:
            return []
        other = open_classify_data(self.cfg.cross_source, self.input)
        dataset = materialize(other.test if other.test is not None else other.train)
        order = np.random.default_rng(0).permutation(len(dataset))
        return [("cross_source", dataset.subset(order),
                 f"{other.description}: {len(dataset)} images, every identity unseen; every pair of up to 2,000")]

    # --- model and batches --------------------------------------------------------------------------

    def kwargs(self) -> dict[str, Any]:
        backbone_kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in self.cfg.backbone_kwargs.items()}
        # Backbones whose layer sizes follow the input (LeNet's first fc) are told the size trained on.
        if tuple(self.input.size) != tuple(self.backbone.input.size) and self.backbone.accepts("input_size"):
            backbone_kwargs.setdefault("input_size", list(self.input.size))
        return {"backbone": self.cfg.backbone, "backbone_kwargs": backbone_kwargs, "dim": self.cfg.dim,
                "in_channels": self.input.channels, "similarity_head": self.cfg.objective == "similarity"}

    def build_model(self):
        self.module = catalog.get(EMBEDDING_MODEL, task="verify-face").build(**self.kwargs())
        if self.cfg.init:
            from cnntool import weights
            from cnntool.models.embedding import load_backbone

            state, _ = weights.load(weights.resolve(self.cfg.init))
            try:
                load_backbone(self.module, state)
            except ValueError as exc:
                raise ConfigError(f"--init {self.cfg.init}: {exc}") from None
        return self.module

    def _normalize(self, pixels: "torch.Tensor") -> "torch.Tensor":
        from cnntool.preprocess import Preprocessor

        return Preprocessor(self.input).normalize(pixels)

    def train_batch(self, images: "torch.Tensor", targets: "torch.Tensor"):
        aug, pixels = self.cfg.augment, images.float()
        if aug.geometric:
            pixels = warp(pixels, aug, fill=float(self.input.fill))
        x = self._normalize(pixels)
        if aug.erase:
            x = erase(x, aug.erase)
        return x, targets

    def eval_batch(self, images: "torch.Tensor") -> "torch.Tensor":
        return self._normalize(images.float())

    def forward_eval(self, model, inputs: "torch.Tensor", *, tta: bool = False) -> "torch.Tensor":
        return model(inputs)

    def loss(self, outputs: "torch.Tensor", targets: "torch.Tensor") -> "torch.Tensor":
        cfg = self.cfg
        if cfg.objective == "triplet":
            return verify.triplet_loss(outputs, targets, cfg.margin, cfg.mining)
        if cfg.objective == "contrastive":
            return verify.contrastive_loss(outputs, targets, cfg.margin)
        return verify.similarity_loss(self.module.head, outputs, targets)

    def distance(self, emb: "torch.Tensor") -> "torch.Tensor":
        head = self.module.head if self.module is not None else None
        if head is not None:
            emb = emb.to(next(head.parameters()).device)
        return verify.all_pair_distances(emb, self.cfg.metric, head)

    def figures(self, metrics: dict[str, Any]) -> dict[str, Any]:
        from cnntool.engine.report import draw_curve

        if "roc" not in metrics:
            return {}
        return {"roc_curve": draw_curve(metrics["roc"]["far"], metrics["roc"]["tar"], x_label="false accept rate",
                                        y_label="true accept rate", title=f"ROC, AUC {metrics['auc']:.3f}, EER "
                                        f"{metrics['eer']:.3f}")}

    def new_metrics(self) -> VerifyMetrics:
        return VerifyMetrics(self.distance)

    def metadata(self) -> dict[str, Any]:
        return {"task": "verify-face", "model": EMBEDDING_MODEL, "kwargs": as_json(self.kwargs()), "classes": list(self.seen),
                "unseen_identities": list(self.unseen), "data_source": self.cfg.data, "input": self.input.document(), "data": self.data_description,
                "val_split": self.cfg.val_split, "augment": self.cfg.augment.describe(),
                "objective": {"name": self.cfg.objective, "margin": self.cfg.margin,
                              "mining": self.cfg.mining if self.cfg.objective == "triplet" else None,
                              "k_per_identity": self.cfg.k_per_identity},
                "verification": {"metric": self.cfg.metric}}


def _check_pairs(labels: np.ndarray, what: str) -> None:
    """A verification figure needs same pairs (an identity with two images) and different pairs."""
    counts = np.unique(labels, return_counts=True)[1]
    if len(counts) < 2 or counts.max() < 2:
        raise ConfigError(f"{what} has {len(labels)} images of {len(counts)} identities: verification figures need "
                          "two identities and one of them twice (give each identity 4 or more images, or raise "
                          "--val-split)")


def materialize(dataset):
    """Folder datasets are read into memory once: P×K sampling indexes images at random."""
    if hasattr(dataset, "images"):
        return dataset
    import torch

    from cnntool.data.batches import ImageTensors

    items = [dataset[i] for i in range(len(dataset))]
    return ImageTensors(torch.stack([im for im, _ in items]), torch.as_tensor([t for _, t in items], dtype=torch.int64))


def embed_dataset(model, normalize, dataset, batch_size: int = 500, device: str = "cpu") -> tuple["torch.Tensor", "torch.Tensor"]:
    """(embeddings, labels) of an in-memory dataset of uint8 images; `normalize` maps a uint8 batch to
    the model's input (the task's eval_batch, or Preprocessor.normalize)."""
    import torch

    out, labels = [], []
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(dataset), batch_size):
            idx = torch.arange(start, min(start + batch_size, len(dataset)))
            images, targets = dataset.batch(idx)
            out.append(model(normalize(images).to(device)).float().cpu())
            labels.append(targets)
    return torch.cat(out), torch.cat(labels)


def calibrate_trained(task: VerifyTask, path, device: str = "cpu") -> dict[str, Any]:
    """After training: thresholds at the EER of every metric the model supports, measured on the
    validation images (seen identities, images never trained on), written into the weights' metadata so
    `cnntool verify-face` uses them."""
    from cnntool import weights
    from cnntool.tasks.verify.metrics import every_pair, fit_same_probability, roc_report

    state, meta = weights.load(path)
    meta.pop("format_version", None)
    model = catalog.get(EMBEDDING_MODEL, task="verify-face").build(**meta["kwargs"]).to(device)
    weights.load_into(model, state, source=str(path))
    emb, labels = embed_dataset(model, task.eval_batch, task.val, device=device)
    metrics = ["euclidean", "cosine"] + (["learned"] if model.head is not None else [])
    thresholds = {}
    for metric in metrics:
        d, same = every_pair(emb, labels, lambda e: verify.all_pair_distances(e.to(device), metric, model.head).cpu())
        r = roc_report(d, same)
        thresholds[metric] = {"threshold": r["eer_threshold"], "chosen_at": "eer", "auc": r["auc"], "eer": r["eer"],
                              "data": f"validation: {len(task.val)} images of the training identities, never trained on",
                              "detect": False, "probability": fit_same_probability(d, same)}
    meta["verification"] = {"metric": task.cfg.metric, "thresholds": thresholds}
    weights.save(path, state, meta)
    return meta["verification"]


CONFIG, TRAINABLE = VerifyConfig, VerifyTask
