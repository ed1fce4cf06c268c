"""Fine-tune the multi-label classifier and save a self-describing checkpoint; evaluate one."""
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
from toolkit.config import DataConfig, TrainConfig
from toolkit.data import DatasetSplits, LabeledTexts, align_labels, load_splits, load_validation_split, read_dataset
from toolkit.errors import DataError
from toolkit.metrics import DEFAULT_THRESHOLD, MetricReport, compute_metrics, tune_thresholds
from toolkit.modeling import POOLING_ATTR, LoadedClassifier, build_classifier, load_classifier, predict_proba, resolve_model_name

log = logging.getLogger(__name__)

PRETRAINED_LR = 2e-5  # BERT fine-tuning standard (Devlin et al.)
RANDOM_INIT_LR = 1e-3  # a random-init encoder has nothing to forget and learns far faster
POS_WEIGHT_CAP = 10.0  # 'auto' pos_weight: sqrt(neg/pos) capped, so a 1-in-500 label does not swamp the loss


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    val_loss: float
    micro_f1: float  # at 0.5
    macro_f1: float  # at 0.5
    macro_f1_tuned: float
    seconds: float


@dataclass
class TrainResult:
    out: Path
    model_name: str
    label_names: list[str]
    history: list[EpochResult]
    best_epoch: int
    thresholds: np.ndarray
    metrics_default: MetricReport  # validation, threshold 0.5
    metrics_tuned: MetricReport  # validation, tuned per-label thresholds
    train_size: int
    val_size: int
    seconds: float
    stopped_early: bool = False


@dataclass
class EvaluateResult:
    checkpoint: Path
    data: str
    metrics_tuned: MetricReport  # at the checkpoint's stored thresholds
    metrics_default: MetricReport  # at 0.5
    extra: dict = field(default_factory=dict)


def train(cfg: TrainConfig, on_epoch: Optional[Callable[[EpochResult], None]] = None) -> TrainResult:
    """Fine-tune, keep the best epoch by validation macro-F1, tune thresholds, save the checkpoint.

    Raises:
        DataError, ModelError, ArtifactError: bad data, model or output directory (before training starts).
    """
    started = time.perf_counter()
    if cfg.out.exists() and not cfg.force:
        raise artifacts.ArtifactError(f"{cfg.out}: already exists; pass --force to replace it or choose another --out")
    splits = load_splits(cfg.data)
    if cfg.max_train_samples:
        splits.train = splits.train.subset(np.arange(min(cfg.max_train_samples, len(splits.train))))
    _set_seed(cfg.seed)
    model_name = resolve_model_name(cfg.model)
    # Record what actually ran (the checkpoint's train_args must reproduce it), not the None defaults.
    cfg = replace(cfg, model=model_name, lr=cfg.lr or (RANDOM_INIT_LR if model_name == "tiny" else PRETRAINED_LR))
    model, tokenizer = build_classifier(model_name, splits.label_names, cfg.dropout, splits.train.texts, cfg.seed)
    device = _pick_device(cfg.device)
    log.info("training %s on %d texts (%d labels), validating on %d, device %s, autocast %s",
             model_name, len(splits.train), len(splits.label_names), len(splits.validation), device,
             _autocast_dtype(cfg.precision, device) or "off")

    loaded = LoadedClassifier(model, tokenizer, splits.label_names, np.full(len(splits.label_names), 0.5), cfg.max_length)
    history, best_state, best_score, best_epoch, stale = _fit(cfg, loaded, splits, device, on_epoch)
    model.load_state_dict(best_state)

    val_probs = predict_proba(loaded, splits.validation.texts, device=device)
    thresholds = tune_thresholds(splits.validation.labels, val_probs)
    metrics_default = compute_metrics(splits.validation.labels, val_probs, DEFAULT_THRESHOLD, splits.label_names)
    metrics_tuned = compute_metrics(splits.validation.labels, val_probs, thresholds, splits.label_names)
    result = TrainResult(cfg.out, model_name, splits.label_names, history, best_epoch, thresholds, metrics_default,
                         metrics_tuned, len(splits.train), len(splits.validation), 0.0, stale >= cfg.patience)
    result.seconds = time.perf_counter() - started
    _save_checkpoint(cfg, model.to("cpu"), tokenizer, splits, result)
    return result


def evaluate(checkpoint: Path, data: Optional[DataConfig] = None, split: str = "dev",
             batch_size: int = 64) -> EvaluateResult:
    """Metrics of a checkpoint at its stored thresholds and at 0.5.

    Args:
        data: a dataset file (all rows) or split directory (`split` of it); None: the validation
            split recorded at training time.
    """
    loaded = load_classifier(checkpoint)
    dataset, where = load_eval_data(data, split, loaded.meta.get("data"), loaded.label_names)
    probs = predict_proba(loaded, dataset.texts, batch_size=batch_size, device=_pick_device("auto"))
    return EvaluateResult(
        checkpoint=Path(checkpoint), data=where,
        metrics_tuned=compute_metrics(dataset.labels, probs, loaded.thresholds, loaded.label_names),
        metrics_default=compute_metrics(dataset.labels, probs, DEFAULT_THRESHOLD, loaded.label_names),
    )


def load_eval_data(data: Optional[DataConfig], split: str, recorded_spec: Optional[dict],
                   label_names: list[str]) -> tuple[LabeledTexts, str]:
    """The texts to score: a file, one split of a directory, or the recorded validation split."""
    if data is None or data.path is None:
        if not recorded_spec:
            raise DataError("no --data given and the model records no validation split; pass --data PATH")
        dataset = load_validation_split(recorded_spec, label_names)
        return dataset, f"{recorded_spec.get('path')} (validation split recorded at training)"
    path = Path(data.path)
    if path.is_dir():
        splits: DatasetSplits = load_splits(data)
        chosen = {"train": splits.train, "dev": splits.validation, "validation": splits.validation,
                  "test": splits.test}.get(split)
        if chosen is None:
            raise DataError(f"{path}: has no {split!r} split; choose train, dev or test")
        return align_labels(chosen, label_names), f"{path} ({split})"
    dataset = read_dataset(path, data.format, data.text_column, data.labels_column, None)
    return align_labels(dataset, label_names), str(path)


# ---------------------------------------------------------------------------- helpers


def _fit(cfg: TrainConfig, loaded: LoadedClassifier, splits: DatasetSplits, device: str, on_epoch):
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    model = loaded.model.to(device)
    batches_per_epoch = math.ceil(len(splits.train) / cfg.batch_size)
    total_steps = batches_per_epoch * cfg.epochs
    no_decay = ("bias", "LayerNorm.weight", "layer_norm")  # the usual BERT recipe: no decay on norms and biases
    groups = [
        {"params": [p for n, p in model.named_parameters() if not any(k in n for k in no_decay)], "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in model.named_parameters() if any(k in n for k in no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=_pos_weight(cfg.pos_weight, splits.train.labels, device))
    amp_dtype = _autocast_dtype(cfg.precision, device)
    use_amp = amp_dtype is not None
    scaler = torch.amp.GradScaler("cuda", enabled=device == "cuda" and amp_dtype == torch.float16)

    encoded = loaded.tokenizer(splits.train.texts, truncation=True, max_length=cfg.max_length)
    lengths = [len(ids) for ids in encoded["input_ids"]]
    targets = torch.from_numpy(splits.train.labels)
    generator = torch.Generator().manual_seed(cfg.seed)

    history, best_state, best_score, best_epoch, stale = [], None, -1.0, 0, 0
    for epoch in range(1, cfg.epochs + 1):
        started = time.perf_counter()
        model.train()
        total_loss, seen = 0.0, 0
        bar = tqdm(_length_grouped_batches(lengths, cfg.batch_size, generator), total=batches_per_epoch,
                   desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", leave=False, disable=None)
        for index in bar:
            features = {k: v.to(device) for k, v in _pad_batch(encoded, index, loaded.tokenizer.pad_token_id).items()}
            with torch.autocast(device_type=device, dtype=amp_dtype, enabled=use_amp):
                logits = model(**features).logits
            loss = loss_fn(logits.float(), targets[index].to(device))
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            total_loss += loss.item() * len(index)
            seen += len(index)
            bar.set_postfix(loss=f"{total_loss / seen:.4f}")
        bar.close()

        probs = predict_proba(loaded, splits.validation.texts, device=device)
        y = splits.validation.labels
        val_loss = float(loss_fn(torch.logit(torch.from_numpy(probs).clamp(1e-7, 1 - 1e-7)).to(device),
                                 torch.from_numpy(y).to(device)).item())
        at_half = compute_metrics(y, probs, DEFAULT_THRESHOLD, splits.label_names)
        tuned = compute_metrics(y, probs, tune_thresholds(y, probs), splits.label_names)
        result = EpochResult(epoch, total_loss / max(seen, 1), val_loss, at_half.micro_f1, at_half.macro_f1,
                             tuned.macro_f1, time.perf_counter() - started)
        history.append(result)
        if on_epoch:
            on_epoch(result)
        log.debug("epoch %d: loss %.4f val_loss %.4f micro-F1 %.4f macro-F1 %.4f (tuned %.4f)", epoch,
                 result.train_loss, val_loss, at_half.micro_f1, at_half.macro_f1, tuned.macro_f1)
        if tuned.macro_f1 > best_score:
            best_score, best_epoch, stale = tuned.macro_f1, epoch, 0
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        else:
            stale += 1
            if stale >= cfg.patience:
                log.info("early stop: macro-F1 did not improve for %d epochs", stale)
                break
    return history, best_state, best_score, best_epoch, stale


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


def _pick_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


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
        "activation": "sigmoid",
        "max_length": cfg.max_length,
        "base_model": result.model_name,
        "pooling": getattr(model.config, POOLING_ATTR, "pooler"),
        "data": splits.spec,
        "split_sizes": {"train": result.train_size, "validation": result.val_size},
        "train_args": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items() if k != "data"},
        "best_epoch": result.best_epoch,
        "history": [asdict(h) for h in result.history],
        "metrics": {"validation_at_0.5": result.metrics_default.to_dict(),
                    "validation_tuned": result.metrics_tuned.to_dict()},
        "train_seconds": result.seconds,
        "versions": artifacts.library_versions(),
    }
    with artifacts.atomic_directory(cfg.out, force=cfg.force) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        artifacts.write_checkpoint_meta(tmp, meta)
