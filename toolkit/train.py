"""Fine-tune the multi-label classifier and save a self-describing checkpoint (evaluating one: toolkit.evaluate)."""
from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from toolkit import artifacts
from toolkit.config import TrainConfig
from toolkit.data import DatasetSplits, describe_fingerprint, load_splits
from toolkit.errors import DataError
from toolkit.metrics import (CROSS_FIT_FOLDS, DEFAULT_THRESHOLD, FEW_POSITIVE_RULE, MIN_TUNE_POSITIVES, MetricReport,
                             compute_metrics, cross_fitted_metrics, threshold_rules, tune_thresholds)
from toolkit.modeling import (POOLING_ATTR, LoadedClassifier, build_classifier, check_max_length,
                              is_sentence_transformers_dir, pick_device, predict_proba, resolve_model_name)

log = logging.getLogger(__name__)

POS_WEIGHT_CAP = 10.0  # 'auto' pos_weight: sqrt(neg/pos) capped, so a 1-in-500 label does not swamp the loss
PROGRESS_SECONDS = 60.0  # without a TTY (tqdm off): one progress line a minute; a GoEmotions CPU epoch is ~17 min


@dataclass(frozen=True)
class TrainingDefaults:
    """What `toolkit train` uses for a model when --lr, --epochs or --warmup are not given."""

    lr: float
    epochs: int
    warmup_ratio: float
    source: str  # why these numbers (shown in the log and recorded in toolkit.json)


# BERT fine-tuning standard (Devlin et al. 2019: lr 2e-5..5e-5, 2-4 epochs, 10% warmup).
BERT_BASE_DEFAULTS = TrainingDefaults(2e-5, 3, 0.1, "BERT-base fine-tuning defaults (Devlin et al.)")
PRESET_DEFAULTS = {
    # Measured on GoEmotions (benchmarks/training.md): 1.5e-4 x 5 epochs reaches 0.478 dev macro-F1 (tuned)
    # where 6e-5 gave 0.145 after an epoch; tuned macro-F1 still rises at epoch 3 (0.29, 0.44, 0.47).
    "minilm": TrainingDefaults(1.5e-4, 5, 0.1, "minilm preset, measured in benchmarks/training.md"),
    # Random-init encoder: nothing to forget, learns far faster; 3 epochs fit the demo corpus in seconds.
    "tiny": TrainingDefaults(1e-3, 3, 0.1, "tiny preset (random-init encoder)"),
}


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    val_loss: float
    micro_f1: float  # at 0.5
    macro_f1: float  # at 0.5
    macro_f1_tuned: float  # thresholds tuned and scored on the validation split (in-sample, optimistic)
    macro_f1_crossfit: float  # thresholds tuned on k-1 folds, scored on the held-out fold
    micro_f1_crossfit: float
    seconds: float


@dataclass
class TrainResult:
    out: Path
    model_name: str
    label_names: list[str]
    history: list[EpochResult]
    best_epoch: int
    thresholds: np.ndarray  # tuned on the whole validation split: what the checkpoint stores
    metrics_default: MetricReport  # validation, threshold 0.5
    metrics_tuned: MetricReport  # validation, thresholds tuned on it (in-sample)
    metrics_crossfit: MetricReport  # validation, cross-fitted thresholds (metrics.cross_fitted_metrics)
    train_size: int
    val_size: int
    seconds: float
    defaults: TrainingDefaults = BERT_BASE_DEFAULTS
    val_probs: Optional[np.ndarray] = None  # the best epoch's validation probabilities (not saved)
    stopped_early: bool = False
    threshold_rules: list[dict] = field(default_factory=list)  # per label: which rule set its threshold (metrics.threshold_rules)


@dataclass
class _Scored:
    """One evaluation of the validation split."""

    probs: np.ndarray
    at_half: MetricReport
    tuned: MetricReport
    crossfit: MetricReport
    val_loss: float


def training_defaults(model_name: str) -> TrainingDefaults:
    """The lr/epochs/warmup a model trains with when the user gives none.

    Presets have measured defaults. A sentence-transformers folder (one with modules.json) gets
    the `minilm` preset's: that preset is such a folder (all-MiniLM-L6-v2), and sentence
    encoders, trained contrastively and pooled by mean, need a much larger step than BERT-base's
    2e-5 to learn a classification head (benchmarks/training.md). Any other directory or hub
    name keeps BERT-base's.
    """
    if model_name in PRESET_DEFAULTS:
        return PRESET_DEFAULTS[model_name]
    if is_sentence_transformers_dir(model_name):
        return replace(PRESET_DEFAULTS["minilm"], source="sentence-transformers folder: the minilm preset's defaults")
    return BERT_BASE_DEFAULTS


def train(cfg: TrainConfig, on_epoch: Optional[Callable[[EpochResult], None]] = None) -> TrainResult:
    """Fine-tune, keep the best epoch by cross-fitted validation F1, tune thresholds, save the checkpoint.

    Raises:
        DataError, ModelError, ArtifactError: bad data, model or output directory (before training starts).
    """
    started = time.perf_counter()
    if cfg.out.exists() and not cfg.force:
        raise artifacts.ArtifactError(f"{cfg.out}: already exists; pass --force to replace it or choose another --out")
    splits = load_splits(cfg.data)
    log.info("data %s: train %s; validation %s (fingerprints recorded in toolkit.json)", splits.spec.get("path"),
             describe_fingerprint(splits.spec["fingerprints"]["train"]),
             describe_fingerprint(splits.spec["fingerprints"]["validation"]))
    if cfg.max_train_samples:
        splits.train = splits.train.subset(np.arange(min(cfg.max_train_samples, len(splits.train))))
    _set_seed(cfg.seed)
    cfg, defaults = _resolve_defaults(cfg)
    model, tokenizer = build_classifier(cfg.model, splits.label_names, cfg.dropout, splits.train.texts, cfg.seed)
    device = pick_device(cfg.device)
    log.info("training %s on %d texts (%d labels), validating on %d, device %s, autocast %s; lr %g, %d epochs, "
             "warmup %g (%s)", cfg.model, len(splits.train), len(splits.label_names), len(splits.validation), device,
             _autocast_dtype(cfg.precision, device) or "off", cfg.lr, cfg.epochs, cfg.warmup_ratio, defaults.source)

    loaded = LoadedClassifier(model, tokenizer, splits.label_names, np.full(len(splits.label_names), 0.5), cfg.max_length)
    check_max_length(loaded, cfg.max_length)  # beyond the model's position embeddings: refused before training
    history, best, best_state, stale = _fit(cfg, loaded, splits, device, on_epoch)
    model.load_state_dict(best_state)

    y = splits.validation.labels
    thresholds, rules = threshold_rules(y, best.probs, objective=cfg.threshold_objective)
    result = TrainResult(cfg.out, cfg.model, splits.label_names, history, _best_epoch(history, cfg), thresholds,
                         best.at_half, compute_metrics(y, best.probs, thresholds, splits.label_names), best.crossfit,
                         len(splits.train), len(splits.validation), 0.0, defaults, best.probs, stale >= cfg.patience,
                         rules)
    result.seconds = time.perf_counter() - started
    _save_checkpoint(cfg, model.to("cpu"), tokenizer, splits, result)
    return result


# ---------------------------------------------------------------------------- helpers


def _resolve_defaults(cfg: TrainConfig) -> tuple[TrainConfig, TrainingDefaults]:
    """Fill lr/epochs/warmup the user left out from the model's defaults (explicit values always win).

    The returned config records what actually ran: the checkpoint's train_args must reproduce it.
    """
    model_name = resolve_model_name(cfg.model)
    defaults = training_defaults(model_name)
    return replace(cfg, model=model_name, lr=cfg.lr if cfg.lr is not None else defaults.lr,
                   epochs=cfg.epochs if cfg.epochs is not None else defaults.epochs,
                   warmup_ratio=cfg.warmup_ratio if cfg.warmup_ratio is not None else defaults.warmup_ratio), defaults


def _fit(cfg: TrainConfig, loaded: LoadedClassifier, splits: DatasetSplits, device: str, on_epoch):
    """Train for cfg.epochs (early stopping on the cross-fitted objective); returns the best epoch's state."""
    model = loaded.model.to(device)
    stepper = _Stepper(cfg, model, splits.train.labels, device)
    encoded = loaded.tokenizer(splits.train.texts, truncation=True, max_length=cfg.max_length)
    lengths = [len(ids) for ids in encoded["input_ids"]]
    targets = torch.from_numpy(splits.train.labels)
    generator = torch.Generator().manual_seed(cfg.seed)

    history, best, best_state, stale = [], None, None, 0
    for epoch in range(1, cfg.epochs + 1):
        started = time.perf_counter()
        model.train()
        batches = _length_grouped_batches(lengths, cfg.batch_size, generator)
        train_loss = _train_epoch(cfg, epoch, stepper, encoded, targets, batches, loaded.tokenizer.pad_token_id,
                                  math.ceil(len(splits.train) / cfg.batch_size))
        scored = _score(loaded, splits, device, stepper.loss_fn, cfg.threshold_objective)
        result = EpochResult(epoch, train_loss, scored.val_loss, scored.at_half.micro_f1, scored.at_half.macro_f1,
                             scored.tuned.macro_f1, scored.crossfit.macro_f1, scored.crossfit.micro_f1,
                             time.perf_counter() - started)
        history.append(result)
        if on_epoch:
            on_epoch(result)
        if best is None or _objective(scored.crossfit, cfg) > _objective(best.crossfit, cfg):
            best, stale = scored, 0
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        else:
            stale += 1
            if stale >= cfg.patience:
                log.info("early stop: cross-fitted %s-F1 did not improve for %d epochs", cfg.threshold_objective, stale)
                break
    return history, best, best_state, stale


def _objective(report: MetricReport, cfg: TrainConfig) -> float:
    """The number epochs are compared on: cross-fitted F1 of the threshold objective."""
    return report.micro_f1 if cfg.threshold_objective == "micro" else report.macro_f1


def _best_epoch(history: list[EpochResult], cfg: TrainConfig) -> int:
    key = (lambda h: h.micro_f1_crossfit) if cfg.threshold_objective == "micro" else (lambda h: h.macro_f1_crossfit)
    return max(history, key=key).epoch  # max keeps the first of equal scores, as _fit does


class _Stepper:
    """AdamW + linear warmup/decay + autocast + gradient clipping: one optimizer step per call."""

    def __init__(self, cfg: TrainConfig, model, train_labels: np.ndarray, device: str):
        from transformers import get_linear_schedule_with_warmup

        self.model, self.device, self.max_grad_norm = model, device, cfg.max_grad_norm
        total_steps = math.ceil(len(train_labels) / cfg.batch_size) * cfg.epochs
        no_decay = ("bias", "LayerNorm.weight", "layer_norm")  # the usual BERT recipe: no decay on norms and biases
        named = list(model.named_parameters())
        groups = [
            {"params": [p for n, p in named if not any(k in n for k in no_decay)], "weight_decay": cfg.weight_decay},
            {"params": [p for n, p in named if any(k in n for k in no_decay)], "weight_decay": 0.0},
        ]
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
        self.loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=_pos_weight(cfg.pos_weight, train_labels, device))
        self.amp_dtype = _autocast_dtype(cfg.precision, device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=device == "cuda" and self.amp_dtype == torch.float16)

    def step(self, features: dict, targets: torch.Tensor) -> float:
        with torch.autocast(device_type=self.device, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            logits = self.model(**features).logits
        loss = self.loss_fn(logits.float(), targets)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return float(loss.item())


def _train_epoch(cfg: TrainConfig, epoch: int, stepper: _Stepper, encoded, targets, batches, pad_id: int,
                 n_batches: int) -> float:
    """One pass over the training batches; returns the mean training loss."""
    from tqdm.auto import tqdm

    bar = tqdm(batches, total=n_batches, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", leave=False, disable=None)
    progress = _ProgressLog(f"epoch {epoch}/{cfg.epochs}", n_batches, enabled=bar.disable)
    total_loss, seen = 0.0, 0
    for index in bar:
        features = {k: v.to(stepper.device) for k, v in _pad_batch(encoded, index, pad_id).items()}
        total_loss += stepper.step(features, targets[index].to(stepper.device)) * len(index)
        seen += len(index)
        bar.set_postfix(loss=f"{total_loss / seen:.4f}")
        progress.update(total_loss / seen)
    bar.close()
    return total_loss / max(seen, 1)


class _ProgressLog:
    """Where tqdm is off (no TTY: CI, nohup, cluster jobs), a log line every PROGRESS_SECONDS instead."""

    def __init__(self, desc: str, total: int, enabled: bool):
        self.desc, self.total, self.enabled, self.every = desc, total, enabled, PROGRESS_SECONDS
        self.started = self.last = time.perf_counter()
        self.done = 0

    def update(self, mean_loss: float) -> None:
        self.done += 1
        now = time.perf_counter()
        if not self.enabled or now - self.last < self.every:
            return
        self.last = now
        per_batch = (now - self.started) / self.done
        log.info("%s: batch %d/%d (%.0f%%), loss %.4f, %.2f s/batch, epoch ends in ~%.0f s", self.desc, self.done,
                 self.total, 100.0 * self.done / self.total, mean_loss, per_batch, per_batch * (self.total - self.done))


def _score(loaded: LoadedClassifier, splits: DatasetSplits, device: str, loss_fn, objective: str) -> _Scored:
    """Validation probabilities, loss, and F1 at 0.5, at in-sample tuned and at cross-fitted thresholds."""
    probs = predict_proba(loaded, splits.validation.texts, device=device)
    y, names = splits.validation.labels, splits.label_names
    logits = torch.logit(torch.from_numpy(probs).clamp(1e-7, 1 - 1e-7)).to(device)
    val_loss = float(loss_fn(logits, torch.from_numpy(y).to(device)).item())
    tuned = compute_metrics(y, probs, tune_thresholds(y, probs, objective=objective), names)
    crossfit = cross_fitted_metrics(y, probs, names, objective) if len(y) >= 2 * CROSS_FIT_FOLDS else tuned
    scored = _Scored(probs, compute_metrics(y, probs, DEFAULT_THRESHOLD, names), tuned, crossfit, val_loss)
    log.debug("validation: loss %.4f, macro-F1 %.4f at 0.5, %.4f tuned in-sample, %.4f cross-fitted", val_loss,
              scored.at_half.macro_f1, tuned.macro_f1, crossfit.macro_f1)
    return scored


def _length_grouped_batches(lengths: list[int], batch_size: int, generator: torch.Generator):
    """Shuffled batches of similar-length texts: dynamic padding then pads little.

    Same idea as transformers' LengthGroupedSampler (which yields indices, not batches):
    shuffle, sort within mega-batches of 50 batches, then shuffle the batch order.
    """
    order = torch.randperm(len(lengths), generator=generator).tolist()
    mega = batch_size * 50
    batches = []
    for start in range(0, len(order), mega):
        chunk = sorted(order[start:start + mega], key=lambda i: lengths[i], reverse=True)
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    for b in torch.randperm(len(batches), generator=generator).tolist():
        yield batches[b]


def _pad_batch(encoded, index: list[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad one batch to its own longest text (dynamic padding)."""
    width = max(len(encoded["input_ids"][i]) for i in index)
    out = {}
    for key in encoded.keys():
        fill = pad_id if key == "input_ids" else 0
        out[key] = torch.tensor([encoded[key][i] + [fill] * (width - len(encoded[key][i])) for i in index])
    return out


def _pos_weight(spec: Optional[str], labels: np.ndarray, device: str) -> Optional[torch.Tensor]:
    if spec is None:
        return None
    if spec == "auto":
        pos = labels.sum(0)
        weight = np.sqrt((len(labels) - pos) / np.maximum(pos, 1.0))
        return torch.tensor(np.clip(weight, 1.0, POS_WEIGHT_CAP), dtype=torch.float32, device=device)
    return torch.full((labels.shape[1],), float(spec), dtype=torch.float32, device=device)


def _autocast_dtype(precision: str, device: str) -> Optional[torch.dtype]:
    """The autocast dtype for the training forward pass (weights and optimizer stay fp32), or None."""
    if precision == "fp32":
        return None
    if device == "cuda":
        bf16_ok = torch.cuda.is_bf16_supported()
    else:
        bf16_ok = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    if precision == "auto":
        return torch.bfloat16 if bf16_ok else (torch.float16 if device == "cuda" else None)
    if precision == "fp16" and device != "cuda":
        raise DataError("--precision fp16 needs --device cuda; on CPU use bf16 or fp32")
    if precision == "bf16" and not bf16_ok:
        raise DataError(f"--precision bf16: this {device} has no bf16 kernels; use fp32")
    return torch.bfloat16 if precision == "bf16" else torch.float16


def _set_seed(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _save_checkpoint(cfg: TrainConfig, model, tokenizer, splits: DatasetSplits, result: TrainResult) -> None:
    meta = {
        "format_version": artifacts.FORMAT_VERSION,
        "created": artifacts.utc_now(),
        "labels": result.label_names,
        "thresholds": result.thresholds.tolist(),
        # per label, the rule that set its threshold: a label with few validation positives is not
        # tuned on them alone (metrics.threshold_rules)
        "threshold_rules": {"min_positives": MIN_TUNE_POSITIVES, "few_positive_rule": FEW_POSITIVE_RULE,
                            "labels": dict(zip(result.label_names, result.threshold_rules))},
        "activation": "sigmoid",
        "max_length": cfg.max_length,
        "base_model": result.model_name,
        "pooling": getattr(model.config, POOLING_ATTR, "pooler"),
        "data": splits.spec,  # how to rebuild the splits, and their fingerprints (data.load_recorded_split checks them)
        "split_sizes": {"train": result.train_size, "validation": result.val_size},
        "train_args": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items() if k != "data"},
        "best_epoch": result.best_epoch,
        "history": [asdict(h) for h in result.history],
        "defaults_source": result.defaults.source,
        # validation_tuned is in-sample (thresholds tuned on the same texts); validation_tuned_crossfit
        # is the honest estimate (metrics.cross_fitted_metrics); the stored thresholds are the former's.
        "metrics": {"validation_at_0.5": result.metrics_default.to_dict(),
                    "validation_tuned": result.metrics_tuned.to_dict(),
                    "validation_tuned_crossfit": result.metrics_crossfit.to_dict()},
        "cross_fit": {"folds": CROSS_FIT_FOLDS, "scheme": "KFold(shuffle=True, random_state=0), pooled out-of-fold decisions",
                      "objective": cfg.threshold_objective},
        "train_seconds": result.seconds,
        "versions": artifacts.library_versions(),
    }
    with artifacts.atomic_directory(cfg.out, force=cfg.force) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        artifacts.write_checkpoint_meta(tmp, meta)
