"""Train a classifier (backbone + head) on a labelled image dataset, resumably, on CPU or GPU.

The loss is chosen by name from `LOSSES` (`cfattack.classifiers.losses`: ce, latent_boost,
lcc, semantic), so new training objectives plug in without touching the loop. A loss is an
``nn.Module`` called as ``loss_fn(logits [N, K], embedding [N, D], labels [N]) -> scalar``
(plus ``index=`` [N], the batch's training-set rows, if it sets ``wants_index``); it may define
``on_epoch_start(model=, data=, epoch=, rng=)`` (e.g. to recluster the training embeddings),
``parts`` (named components of the last value, averaged per epoch into the history) and
``epoch_record()`` (extra per-epoch figures), and keeps state in its ``state_dict``
(checkpointed with the run). Its parameters, if any, are optimised with the model's.

Every random draw (data order, translation) comes from one seeded ``torch.Generator``; dropout
uses torch's global generator. Both states are checkpointed, so a run stopped anywhere
(``max_steps``) and resumed continues exactly as an unbroken run would::

    result = train_classifier(ClassifierTrainingConfig(epochs=15, threads=1), "runs/classifier-baseline")
    result.metrics["test"]["accuracy"]

Model selection: the weights of the epoch with the best validation accuracy are kept, scored
on the test split, and saved as ``classifier.pt`` (`cfattack.classifiers` checkpoint format).
The final scores include the embedding's structure (silhouette, Davies-Bouldin, kNN purity,
dead units; `cfattack.quality.metrics.embedding_metrics`) and, where a class hierarchy is known
(Fashion-MNIST), the mistake severity.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cfattack.atomic import atomic_torch_save, atomic_write_text
from cfattack.classifiers import Classifier, build_classifier, save_classifier_checkpoint
from cfattack.classifiers.hierarchy import hierarchy_for
from cfattack.classifiers.losses import LOSSES, CrossEntropy
from cfattack.config import ClassifierTrainingConfig
from cfattack.errors import InvalidInputError
from cfattack.quality.metrics import accuracy, confusion_matrix, embedding_metrics, macro_f1, mistake_severity, silhouette
from cfattack.training.augment import random_translate
from cfattack.training.data import ImageDataset, load_dataset

__all__ = [
    "ClassifierTrainingResult",
    "CrossEntropy",
    "LOSSES",
    "train_classifier",
    "random_translate",
    "learning_rate",
    "CHECKPOINT_NAME",
    "CLASSIFIER_NAME",
]

CHECKPOINT_NAME = "checkpoint.pt"
CLASSIFIER_NAME = "classifier.pt"
_CHECKPOINT_FORMAT = "cfattack.classifier-training/1"
# Settings that may differ between the run that wrote a checkpoint and the one resuming it.
_RESUME_MAY_CHANGE = {"threads", "device", "eval_batch"}


# ---------------------------------------------------------------------------------------------
# Pure helpers.


def learning_rate(config: ClassifierTrainingConfig, step: int, steps_per_epoch: int) -> float:
    """Learning rate of optimisation step ``step`` (0-based): linear warm-up, then the schedule."""
    total = config.epochs * steps_per_epoch
    warm = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else 1.0
    if config.schedule == "cosine":
        factor = 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    elif config.schedule == "step":
        factor = config.step_gamma ** (step // (config.step_epochs * steps_per_epoch))
    else:
        factor = 1.0
    return config.lr * warm * factor


@torch.no_grad()
def _evaluate(model: Classifier, data: ImageDataset, batch: int, device: torch.device) -> dict:
    """Accuracy, macro-F1, mean cross-entropy, predictions and embeddings of ``model`` on ``data`` (eval mode)."""
    was_training = model.training
    model.eval()
    outputs = [model.forward_with_embedding(data.images[i:i + batch].to(device)) for i in range(0, len(data), batch)]
    model.train(was_training)
    logits = torch.cat([o[0].float().cpu() for o in outputs])
    pred = logits.argmax(dim=1)
    return {
        "accuracy": accuracy(data.labels, pred),
        "macro_f1": macro_f1(data.labels, pred),
        "cross_entropy": float(F.cross_entropy(logits, data.labels)),
        "predictions": pred,
        "embeddings": torch.cat([o[1].float().cpu() for o in outputs]),
    }


def _val_silhouette(embeddings: torch.Tensor, labels: torch.Tensor) -> float | None:
    """Silhouette of the validation embedding, or None (scikit-learn missing, too few samples or classes)."""
    try:
        return silhouette(embeddings, labels)
    except (ModuleNotFoundError, InvalidInputError):
        return None


def _final_scores(scores: dict, data: ImageDataset) -> dict:
    """JSON-ready final scores of one split: label metrics, embedding structure, mistake severity."""
    out = {k: v for k, v in scores.items() if k not in ("predictions", "embeddings")}
    n = len(data)
    try:
        out |= embedding_metrics(scores["embeddings"], data.labels, k=min(10, n - 1))
    except InvalidInputError:  # too few samples or a single class: structure is undefined
        out |= {"silhouette": None, "davies_bouldin": None, "knn_purity": None, "dead_units": None}
    out = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}
    hierarchy = hierarchy_for(data.class_names)
    out["mistake_severity"] = (
        mistake_severity(data.labels, scores["predictions"], hierarchy.distance_matrix()) if hierarchy else None
    )
    return out


def _round_trip_float16(model: nn.Module) -> None:
    """Round floating weights and buffers to float16 and back, as a float16 checkpoint stores them."""
    with torch.no_grad():
        for tensor in list(model.parameters()) + list(model.buffers()):
            if tensor.is_floating_point():
                tensor.copy_(tensor.to(torch.float16).to(tensor.dtype))


def _write_json(obj: object, path: Path) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def _split(config: ClassifierTrainingConfig, datasets: Mapping[str, ImageDataset] | None, split: str) -> ImageDataset:
    """The ``split`` of the run's data (given or loaded), cut to ``config.max_*_images``."""
    if datasets is None:
        data = load_dataset(config.data, split)
    elif split not in datasets:
        raise InvalidInputError(f"datasets must hold train, val and test; {split!r} is missing")
    else:
        data = datasets[split]
    limit = config.max_train_images if split == "train" else config.max_eval_images
    return data if limit is None or limit >= len(data) else data.subset(np.arange(limit))


# ---------------------------------------------------------------------------------------------
# The trainer.


@dataclass(frozen=True)
class ClassifierTrainingResult:
    """Where a (possibly partial) run stands.

    ``metrics`` is the content of ``metrics.json`` (history so far; ``test`` once finished);
    ``classifier_path`` is None until the run has finished.
    """

    out_dir: Path
    epoch: int
    step: int
    finished: bool
    seconds: float
    classifier_path: Path | None
    metrics: dict


class _Run:
    """All state of one training run; `state`/`load` make it resumable at any step."""

    def __init__(self, config: ClassifierTrainingConfig, train: ImageDataset) -> None:
        if config.loss not in LOSSES:
            raise InvalidInputError(f"unknown loss {config.loss!r}; choose one of {', '.join(sorted(LOSSES))}")
        self.config = config
        self.train_data = train
        self.device = torch.device(config.device)
        self.steps_per_epoch = len(train) // config.batch
        if self.steps_per_epoch == 0:
            raise InvalidInputError(f"batch {config.batch} is larger than the {len(train)} training images")
        torch.manual_seed(config.seed)  # initial weights; dropout continues from here
        self.model: Classifier = build_classifier(
            train.num_classes, in_channels=train.images.shape[1], embedding_dim=config.embedding_dim,
            head=config.head, width=config.width, dropout=config.dropout, backbone=config.backbone,
            activation=config.activation, image_size=int(train.images.shape[-1]),
        ).to(self.device).train()
        self.loss_fn = LOSSES[config.loss](config, tuple(train.class_names)).to(self.device)
        self.loss_wants_index = bool(getattr(self.loss_fn, "wants_index", False))
        params = list(self.model.parameters()) + list(self.loss_fn.parameters())
        if config.optimizer == "adamw":
            self.opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        else:
            self.opt = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
        self.rng = torch.Generator().manual_seed(config.seed)
        self.epoch = 0            # completed epochs
        self.position = 0         # completed steps inside the current epoch
        self.step = 0             # completed steps in all
        self.order: torch.Tensor | None = None  # this epoch's permutation of the training set
        self.sums = _empty_sums()  # running training figures of this epoch
        self.history: list[dict] = []
        self.best_accuracy = -1.0
        self.best_epoch = 0
        self.best_state: dict | None = None
        self.seconds = 0.0

    # -- state -----------------------------------------------------------------------------------

    def state(self) -> dict:
        state = {
            "format": _CHECKPOINT_FORMAT,
            "config": self.config.model_dump(mode="json"),
            "model": self.model.state_dict(), "loss_fn": self.loss_fn.state_dict(), "opt": self.opt.state_dict(),
            "rng": self.rng.get_state(), "torch_rng": torch.get_rng_state(),
            "epoch": self.epoch, "position": self.position, "step": self.step, "order": self.order,
            "sums": {**self.sums, "parts": dict(self.sums["parts"])}, "history": self.history,
            "best_accuracy": self.best_accuracy, "best_epoch": self.best_epoch, "best_state": self.best_state,
            "seconds": self.seconds,
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def load(self, state: dict) -> None:
        if not isinstance(state, dict) or state.get("format") != _CHECKPOINT_FORMAT:
            raise InvalidInputError("not a cfattack classifier training checkpoint")
        saved = ClassifierTrainingConfig.model_validate(state["config"])
        if saved.model_dump(exclude=_RESUME_MAY_CHANGE) != self.config.model_dump(exclude=_RESUME_MAY_CHANGE):
            raise InvalidInputError("the checkpoint was written with a different training config; "
                                    "use a new output directory or the same settings")
        self.model.load_state_dict(state["model"])
        self.loss_fn.load_state_dict(state["loss_fn"])
        self.opt.load_state_dict(state["opt"])
        self.rng.set_state(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.epoch, self.position, self.step = int(state["epoch"]), int(state["position"]), int(state["step"])
        self.order = state["order"]
        self.sums = {**_empty_sums(), **state["sums"]}
        self.history = list(state["history"])
        self.best_accuracy, self.best_epoch = float(state["best_accuracy"]), int(state["best_epoch"])
        self.best_state = state["best_state"]
        self.seconds = float(state["seconds"])

    # -- training --------------------------------------------------------------------------------

    def start_epoch(self) -> None:
        """Draw this epoch's order and let the loss prepare (e.g. recluster embeddings)."""
        self.order = torch.randperm(len(self.train_data), generator=self.rng)
        self.sums = _empty_sums()
        hook = getattr(self.loss_fn, "on_epoch_start", None)
        if hook is not None:
            hook(model=self.model, data=self.train_data, epoch=self.epoch, rng=self.rng)

    def train_step(self) -> float:
        cfg = self.config
        # 1. Batch: the next slice of this epoch's order, randomly translated.
        idx = self.order[self.position * cfg.batch:(self.position + 1) * cfg.batch]
        x = random_translate(self.train_data.images[idx], cfg.translate_px, self.rng).to(self.device)
        y = self.train_data.labels[idx].to(self.device)
        # 2. Forward, loss, update at this step's learning rate.
        for group in self.opt.param_groups:
            group["lr"] = learning_rate(cfg, self.step, self.steps_per_epoch)
        logits, embedding = self.model.forward_with_embedding(x)
        if self.loss_wants_index:
            loss = self.loss_fn(logits, embedding, y, index=idx)
        else:
            loss = self.loss_fn(logits, embedding, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        # 3. Bookkeeping.
        self.position += 1
        self.step += 1
        self.sums["loss"] += float(loss.detach()) * len(idx)
        self.sums["correct"] += int((logits.detach().argmax(dim=1) == y).sum())
        self.sums["seen"] += len(idx)
        for name, value in (getattr(self.loss_fn, "parts", None) or {}).items():
            self.sums["parts"][name] = self.sums["parts"].get(name, 0.0) + float(value) * len(idx)
        return float(loss.detach())

    def end_epoch(self, val: ImageDataset) -> dict:
        """Score on val, remember the best weights, start counting the next epoch."""
        scores = _evaluate(self.model, val, self.config.eval_batch, self.device)
        self.epoch += 1
        record = {
            "epoch": self.epoch, "step": self.step,
            "train_loss": self.sums["loss"] / max(self.sums["seen"], 1),
            "train_accuracy": self.sums["correct"] / max(self.sums["seen"], 1),
            "val_accuracy": scores["accuracy"], "val_macro_f1": scores["macro_f1"],
            "val_cross_entropy": scores["cross_entropy"],
            "val_silhouette": _val_silhouette(scores["embeddings"], val.labels),
            "lr": learning_rate(self.config, self.step - 1, self.steps_per_epoch),
        }
        seen = max(self.sums["seen"], 1)
        record.update({f"train_{name}": total / seen for name, total in self.sums["parts"].items()})
        epoch_record = getattr(self.loss_fn, "epoch_record", None)
        if epoch_record is not None:
            record.update(epoch_record())
        self.history.append(record)
        if scores["accuracy"] > self.best_accuracy:
            self.best_accuracy, self.best_epoch = scores["accuracy"], self.epoch
            self.best_state = copy.deepcopy(self.model.state_dict())
        self.position, self.order = 0, None
        return record


def _extras(record: dict) -> str:
    """The loss components and the val silhouette of an epoch record, for the progress line."""
    parts = [f"{k[len('train_'):]} {v:.4f}" for k, v in record.items()
             if k.startswith("train_") and k not in ("train_loss", "train_accuracy")]
    if record.get("val_silhouette") is not None:
        parts.append(f"val silhouette {record['val_silhouette']:.3f}")
    if record.get("lcc_active"):
        parts.append(f"misclustered {record['lcc_misclustered_share']:.2%} ({record['lcc_seconds']:.0f} s)")
    return (" | " + ", ".join(parts)) if parts else ""


def _empty_sums() -> dict:
    return {"loss": 0.0, "correct": 0, "seen": 0, "parts": {}}


def _metrics_document(run: _Run, finished: bool, extra: dict | None = None) -> dict:
    doc = {
        "finished": finished, "epochs_done": run.epoch, "steps": run.step, "seconds": round(run.seconds, 1),
        "best_epoch": run.best_epoch, "best_val_accuracy": run.best_accuracy if run.history else None,
        "num_parameters": sum(p.numel() for p in run.model.parameters()),
        "history": run.history,
    }
    doc.update(extra or {})
    return doc


def train_classifier(
    config: ClassifierTrainingConfig,
    out_dir: str | os.PathLike,
    progress: bool = True,
    max_steps: int | None = None,
    datasets: Mapping[str, ImageDataset] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> ClassifierTrainingResult:
    """Train (or resume) until ``config.epochs`` are done or this call has made ``max_steps`` steps.

    Writes into ``out_dir``: ``config.json``; ``checkpoint.pt`` (everything needed to resume,
    after every epoch and when ``max_steps`` stops the call); ``metrics.json`` (per-epoch
    history; once finished also the best epoch's val and test scores and the test confusion
    matrix); and once finished ``classifier.pt``, the best-val weights in the
    `cfattack.classifiers` checkpoint format (float16 storage if ``config.save_float16``).
    The final val and test scores are measured on the weights exactly as saved.

    Args:
        config: the run's settings; a checkpoint in ``out_dir`` must have been written with the
            same ones (``threads``, ``device`` and ``eval_batch`` may change).
        out_dir: the run's folder (created if missing).
        progress: on a terminal a bar and one line per epoch, and a summary line on stderr
            either way (`cfattack.progress`).
        max_steps: stop this call after this many optimisation steps (checkpointing first).
        datasets: already loaded ``{"train", "val", "test"}`` splits to use instead of loading
            ``config.data`` (tests, notebooks); ``config.max_*_images`` still apply.
        on_progress: called after every step as ``on_progress(steps done, total steps)``.
    """
    from cfattack.progress import Progress

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    train, val = _split(config, datasets, "train"), _split(config, datasets, "val")
    if val.class_names != train.class_names:
        raise InvalidInputError(f"val classes {val.class_names} differ from train classes {train.class_names}")

    run = _Run(config, train)
    ckpt_path = out / CHECKPOINT_NAME
    if ckpt_path.exists():
        run.load(torch.load(ckpt_path, map_location=run.device, weights_only=True))
    _write_json(config.model_dump(mode="json"), out / "config.json")

    total_steps = config.epochs * run.steps_per_epoch
    steps_this_call = 0
    mark = time.monotonic()

    def save_checkpoint() -> None:
        nonlocal mark
        run.seconds += time.monotonic() - mark
        mark = time.monotonic()
        atomic_torch_save(run.state(), ckpt_path)

    bar = Progress(f"train classifier ({config.loss}, {config.head})", total=total_steps, unit="steps",
                   quiet=not progress, initial=run.step, leave=True)
    steps_before = run.step
    with bar:  # an error closes the bar without a summary
        while run.epoch < config.epochs:
            if max_steps is not None and steps_this_call >= max_steps:
                break
            if run.position == 0 and run.order is None:
                run.start_epoch()
            while run.position < run.steps_per_epoch:
                if max_steps is not None and steps_this_call >= max_steps:
                    break
                loss = run.train_step()
                steps_this_call += 1
                bar.update_to(run.step)
                bar.note(f"epoch {run.epoch + 1}, loss={loss:.3f}")
                if on_progress is not None:
                    on_progress(run.step, total_steps)
            if run.position < run.steps_per_epoch:  # stopped by max_steps inside the epoch
                break
            record = run.end_epoch(val)
            bar.write(f"epoch {record['epoch']}/{config.epochs}: train loss {record['train_loss']:.4f} "
                      f"acc {record['train_accuracy']:.4f} | val acc {record['val_accuracy']:.4f} "
                      f"macro-F1 {record['val_macro_f1']:.4f}{_extras(record)}")
            save_checkpoint()
            _write_json(_metrics_document(run, finished=False), out / "metrics.json")
        best = f", best val accuracy {run.best_accuracy:.4f} (epoch {run.best_epoch})" if run.history else ""
        bar.close(bar.rate_line("train classifier", run.step - steps_before, "steps",
                                f"epoch {run.epoch} of {config.epochs}{best}"))

    if run.epoch < config.epochs:
        save_checkpoint()
        metrics = _metrics_document(run, finished=False)
        _write_json(metrics, out / "metrics.json")
        return ClassifierTrainingResult(out, run.epoch, run.step, False, run.seconds, None, metrics)

    # Final: best-val weights, rounded as they will be stored, scored on val and test, saved.
    run.seconds += time.monotonic() - mark
    mark = time.monotonic()
    model = run.model
    model.load_state_dict(run.best_state)
    if config.save_float16:
        _round_trip_float16(model)
    test = _split(config, datasets, "test")
    if test.class_names != train.class_names:
        raise InvalidInputError(f"test classes {test.class_names} differ from train classes {train.class_names}")
    val_scores = _evaluate(model, val, config.eval_batch, run.device)
    test_scores = _evaluate(model, test, config.eval_batch, run.device)
    cm = confusion_matrix(test.labels, test_scores["predictions"], num_classes=test.num_classes)
    scores = {
        "val": _final_scores(val_scores, val),
        "test": _final_scores(test_scores, test) | {"confusion_matrix": cm.tolist(), "num_images": len(test)},
    }
    metrics = _metrics_document(run, finished=True, extra=scores | {"class_names": list(train.class_names)})
    metadata = {
        "class_names": list(train.class_names),
        "data": config.data,
        "input": {"channels": int(train.images.shape[1]), "resolution": int(train.images.shape[-1]),
                  "range": [-1.0, 1.0]},
        "metrics": {"best_epoch": run.best_epoch, "val_accuracy": scores["val"]["accuracy"],
                    "val_macro_f1": scores["val"]["macro_f1"], "test_accuracy": scores["test"]["accuracy"],
                    "test_macro_f1": scores["test"]["macro_f1"],
                    "test_silhouette": scores["test"]["silhouette"],
                    "test_mistake_severity": scores["test"]["mistake_severity"]},
        "training": config.model_dump(mode="json"),
    }
    classifier_path = save_classifier_checkpoint(model, out / CLASSIFIER_NAME, metadata=metadata,
                                                 half=config.save_float16)
    _write_json(metrics, out / "metrics.json")
    return ClassifierTrainingResult(out, run.epoch, run.step, True, run.seconds, classifier_path, metrics)
