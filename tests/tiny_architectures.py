"""Tiny random-init encoders of every architecture in the README's support matrix, each with its
own tokenizer type trained here on the demo texts (no downloads).

`save_encoder(arch, texts, out)` writes what a user brings to `toolkit train --model DIR`: the
encoder (`AutoModel`, no head) and its fast tokenizer. `save_hf_classifier(arch, texts, labels, out)`
writes a plain Hugging Face multi-label `*ForSequenceClassification` checkpoint (problem_type and
id2label in config.json), what a user brings to `toolkit export` directly.

Tokenizer families, as the real checkpoints ship them:
- WordPiece: BERT, DistilBERT, ELECTRA ([CLS]/[SEP], pad 0) and MPNet (<s>/</s>, pad 1);
- byte-level BPE: RoBERTa (<s>/</s>, pad 1) and ModernBERT ([CLS]/[SEP], pad 3 here);
- Unigram (SentencePiece-style, Metaspace): XLM-RoBERTa (<s>/</s>, pad 1), ALBERT and DeBERTa-v2 ([CLS]/[SEP]).
Pad ids differ on purpose, so code that assumes BERT's 0 fails here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

# hidden 32, 2 layers, 4 heads: the STYLE.md test shape
SHAPE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
VOCAB_SIZE = 800  # the demo corpus has a few hundred distinct words

ARCHITECTURES = ("bert", "distilbert", "roberta", "xlm-roberta", "albert", "electra", "deberta-v2", "mpnet",
                 "modernbert")

_ROBERTA_SPECIALS = dict(bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                         pad_token="<pad>", mask_token="<mask>")
_BERT_SPECIALS = dict(cls_token="[CLS]", sep_token="[SEP]", unk_token="[UNK]", pad_token="[PAD]", mask_token="[MASK]")


def save_encoder(arch: str, texts: Sequence[str], out: Path, tokenizer_of: Optional[str] = None) -> Path:
    """A random-init encoder of `arch` and its tokenizer in `out` (save_pretrained).

    Args:
        tokenizer_of: another architecture whose tokenizer to save instead (e.g. DistilBERT with
            BERT's tokenizer, which emits token_type_ids that DistilBERT's forward does not take).
    """
    import torch
    from transformers import AutoModel

    tokenizer = build_tokenizer(tokenizer_of or arch, texts)
    torch.manual_seed(0)
    model = AutoModel.from_config(build_config(arch, tokenizer))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return Path(out)


def save_hf_classifier(arch: str, texts: Sequence[str], labels: Sequence[str], out: Path) -> Path:
    """A plain HF multi-label `*ForSequenceClassification` checkpoint (random init) and its tokenizer."""
    import torch
    from transformers import AutoModelForSequenceClassification

    tokenizer = build_tokenizer(arch, texts)
    config = build_config(arch, tokenizer, num_labels=len(labels), id2label=dict(enumerate(labels)),
                          label2id={n: i for i, n in enumerate(labels)}, problem_type="multi_label_classification")
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return Path(out)


def build_config(arch: str, tokenizer, **extra):
    """The tiny config of `arch`, its vocabulary and special-token ids taken from `tokenizer`."""
    from transformers import AutoConfig

    ids = dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    shape = dict(SHAPE, max_position_embeddings=128)
    if arch == "distilbert":
        shape = dict(dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=128)
    elif arch in ("roberta", "xlm-roberta"):
        shape["max_position_embeddings"] = 130  # positions start after the pad id
        ids.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    elif arch == "albert":
        shape.update(embedding_size=16)  # one set of layer weights shared by both layers (num_hidden_groups=1)
    elif arch == "electra":
        # ELECTRA-base's shape: embedding_size = hidden_size, so no embeddings_project (ALBERT covers a
        # factorized embedding). Measured at embedding_size 16, 24 and 64 with the matrix's settings, the
        # projection left tuned macro-F1 at 0.47-0.73 after 8 epochs, varying from run to run (the
        # suite once failed the 0.65 bar at 0.645); at 32, 0.956 twice, identically.
        shape.update(embedding_size=SHAPE["hidden_size"])
    elif arch == "deberta-v2":  # DeBERTa-v3's settings (same class): relative attention, no absolute positions
        shape.update(relative_attention=True, pos_att_type=["p2c", "c2p"], position_buckets=32,
                     max_relative_positions=-1, position_biased_input=False, norm_rel_ebd="layer_norm",
                     share_att_key=True, type_vocab_size=0)
    elif arch == "mpnet":
        shape.update(relative_attention_num_buckets=32, max_position_embeddings=130)  # positions start after pad
        ids.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    elif arch == "modernbert":
        shape.update(global_attn_every_n_layers=2, local_attention=16)
        ids.update(cls_token_id=tokenizer.cls_token_id, sep_token_id=tokenizer.sep_token_id,
                   bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id)
    config = AutoConfig.for_model(arch, **shape, **ids, **extra)
    for name, value in vars(config).copy().items():  # no dropout: the demo corpus is learned in a few epochs
        if "dropout" in name and isinstance(value, float):
            setattr(config, name, 0.0)
    return config


def build_tokenizer(arch: str, texts: Sequence[str]):
    """`arch`'s fast tokenizer class over a vocabulary of its tokenizer family trained on `texts`."""
    if arch in ("bert", "distilbert", "electra", "mpnet"):
        return _wordpiece(arch, texts)
    if arch in ("roberta", "modernbert"):
        return _byte_level_bpe(arch, texts)
    if arch in ("xlm-roberta", "albert", "deberta-v2"):
        return _unigram(arch, texts)
    raise ValueError(f"no tokenizer recipe for {arch!r}")


def _wordpiece(arch: str, texts: Sequence[str]):
    import tempfile

    from transformers import AutoTokenizer, BertTokenizerFast, DistilBertTokenizerFast, ElectraTokenizerFast, \
        MPNetTokenizerFast

    from toolkit.modeling import wordpiece_vocab

    if arch == "mpnet":
        specials = dict(bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="[UNK]",
                        pad_token="<pad>", mask_token="<mask>")
        order = ["<s>", "<pad>", "</s>", "[UNK]", "<mask>"]
    else:
        specials, order = _BERT_SPECIALS, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    cls = {"bert": BertTokenizerFast, "distilbert": DistilBertTokenizerFast, "electra": ElectraTokenizerFast,
           "mpnet": MPNetTokenizerFast}[arch]
    with tempfile.TemporaryDirectory() as tmp:
        # the toolkit's deterministic vocab: tokenizers' WordPieceTrainer gives another on every call
        Path(tmp, "vocab.txt").write_text("".join(f"{t}\n" for t in wordpiece_vocab(texts, VOCAB_SIZE, order)),
                                          encoding="utf-8")
        tokenizer = cls(vocab_file=f"{tmp}/vocab.txt", do_lower_case=True, **specials)
        tokenizer.save_pretrained(tmp)
        return AutoTokenizer.from_pretrained(tmp)  # detached from the temporary vocab file


def _byte_level_bpe(arch: str, texts: Sequence[str]):
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast, RobertaTokenizerFast

    if arch == "roberta":
        specials, order = _ROBERTA_SPECIALS, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    else:  # ModernBERT's OLMo-style BPE with BERT-style specials, pad not at 0
        specials, order = _BERT_SPECIALS, ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(list(texts), vocab_size=VOCAB_SIZE, special_tokens=order, show_progress=False)
    cls_token, sep_token = specials["cls_token"], specials["sep_token"]
    bpe.post_processor = TemplateProcessing(
        single=f"{cls_token} $A {sep_token}", pair=f"{cls_token} $A {sep_token} $B:1 {sep_token}:1",
        special_tokens=[(cls_token, bpe.token_to_id(cls_token)), (sep_token, bpe.token_to_id(sep_token))])
    if arch == "roberta":
        return RobertaTokenizerFast(tokenizer_object=bpe._tokenizer, **specials)
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, model_input_names=["input_ids", "attention_mask"],
                                   **specials)


def _unigram(arch: str, texts: Sequence[str]):
    from tokenizers import SentencePieceUnigramTokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import AlbertTokenizerFast, DebertaV2TokenizerFast, XLMRobertaTokenizerFast

    if arch == "xlm-roberta":
        specials, order = _ROBERTA_SPECIALS, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        cls = XLMRobertaTokenizerFast
    else:
        specials = dict(_BERT_SPECIALS, unk_token="<unk>", pad_token="<pad>") if arch == "albert" else _BERT_SPECIALS
        order = [specials[k] for k in ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token")]
        cls = AlbertTokenizerFast if arch == "albert" else DebertaV2TokenizerFast
    unigram = SentencePieceUnigramTokenizer()
    unigram.train_from_iterator(list(texts), vocab_size=VOCAB_SIZE, special_tokens=order,
                                unk_token=specials["unk_token"], show_progress=False)
    backend = _rounded_scores(unigram)
    cls_token, sep_token = specials["cls_token"], specials["sep_token"]
    backend.post_processor = TemplateProcessing(
        single=f"{cls_token} $A {sep_token}", pair=f"{cls_token} $A {sep_token} $B:1 {sep_token}:1",
        special_tokens=[(cls_token, backend.token_to_id(cls_token)), (sep_token, backend.token_to_id(sep_token))])
    return cls(tokenizer_object=backend, **specials)


def _rounded_scores(unigram):
    """The trained Unigram tokenizer with its piece scores rounded to 1e-9. The trainer gives the same
    pieces on every call but scores that differ in their last bits (1e-14 measured), which could
    break a Viterbi tie differently from run to run."""
    import json

    from tokenizers import Tokenizer

    state = json.loads(unigram._tokenizer.to_str())
    state["model"]["vocab"] = [[piece, round(score, 9)] for piece, score in state["model"]["vocab"]]
    return Tokenizer.from_str(json.dumps(state))
