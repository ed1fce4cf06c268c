"""The classifier: presets, checkpoint loading rules and the seeds' state_dict import.

The seed modules (tests/seed_models.py) are declared exactly as the seed notebooks define them,
so the import is checked against the original architecture, not against our own reading of it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from seed_models import BERTClass, SeedCLSClassifier
from transformers import BertConfig

from toolkit import artifacts
from toolkit.errors import ModelError
from toolkit.modeling import (build_classifier, import_seed_checkpoint, load_any, load_classifier,
                              predict_proba, train_wordpiece_tokenizer)

LABELS = ["anger", "fear", "joy", "sadness", "surprise"]
TEXTS = ["I am so happy today", "this is terrifying and sad", "what a surprise!", "grr", "ok"]


@pytest.fixture(scope="module")
def base_model_dir(tmp_path_factory) -> Path:
    """A local 'base model': a tiny BERT config plus a WordPiece tokenizer, as from_pretrained expects."""
    out = tmp_path_factory.mktemp("base")
    tokenizer = train_wordpiece_tokenizer(TEXTS * 20, vocab_size=200)
    BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
               intermediate_size=64).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def seed_logits(module, tokenizer, layout: str) -> np.ndarray:
    enc = tokenizer(TEXTS, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.inference_mode():
        if layout == "bertclass":
            out = module(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
        else:
            out = module(enc["input_ids"], enc["attention_mask"])
    return out.numpy()


@pytest.mark.parametrize("seed_class, layout, suffix", [
    (BERTClass, "bertclass", ".pt"), (SeedCLSClassifier, "cls-head", ".safetensors"),
])
def test_seed_import_reproduces_original_logits(base_model_dir, tmp_path, seed_class, layout, suffix):
    torch.manual_seed(0)
    original = seed_class(BertConfig.from_pretrained(base_model_dir), len(LABELS)).eval()
    with torch.no_grad():  # a trained-looking head, so a dropped bias or pooler would show
        for p in original.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    path = tmp_path / f"seed{suffix}"
    if suffix == ".pt":
        torch.save(original.state_dict(), path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in original.state_dict().items()}, str(path))

    loaded = import_seed_checkpoint(path, str(base_model_dir), LABELS)
    assert loaded.source["kind"] == f"seed-{layout}"
    assert loaded.label_names == LABELS
    assert getattr(loaded.model.config, "toolkit_pooling", "pooler") == ("cls" if layout == "cls-head" else "pooler")

    expected = seed_logits(original, loaded.tokenizer, layout)
    enc = loaded.tokenizer(TEXTS, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.inference_mode():
        got = loaded.model(**enc).logits.numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    probs = predict_proba(loaded, TEXTS, batch_size=2)  # length-sorted batches, original order back
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-expected)), atol=1e-5)


def test_imported_cls_model_round_trips_through_save_pretrained(base_model_dir, tmp_path):
    torch.manual_seed(1)
    original = SeedCLSClassifier(BertConfig.from_pretrained(base_model_dir), len(LABELS)).eval()
    torch.save(original.state_dict(), tmp_path / "seed.pt")
    loaded = import_seed_checkpoint(tmp_path / "seed.pt", str(base_model_dir), LABELS)
    loaded.model.save_pretrained(tmp_path / "ckpt")
    loaded.tokenizer.save_pretrained(tmp_path / "ckpt")
    again = load_classifier(tmp_path / "ckpt")
    assert type(again.model).__name__ == "BertForMultiLabelCLS"
    np.testing.assert_allclose(predict_proba(again, TEXTS), predict_proba(loaded, TEXTS), atol=1e-6)


def test_seed_import_errors(base_model_dir, tmp_path):
    torch.manual_seed(0)
    original = BERTClass(BertConfig.from_pretrained(base_model_dir), 3)
    torch.save(original.state_dict(), tmp_path / "seed.pt")
    with pytest.raises(ModelError, match="the head has 3 outputs but 5 labels were given"):
        import_seed_checkpoint(tmp_path / "seed.pt", str(base_model_dir), LABELS)
    torch.save({"foo.weight": torch.zeros(2, 2)}, tmp_path / "other.pt")
    with pytest.raises(ModelError, match=r"unknown state_dict layout.*BERTClass \(l1\.\*, l3\.\*\)"):
        import_seed_checkpoint(tmp_path / "other.pt", str(base_model_dir), LABELS)
    (tmp_path / "broken.pt").write_bytes(b"not a zip file")
    with pytest.raises(ModelError, match="broken.pt: not a readable state_dict"):
        import_seed_checkpoint(tmp_path / "broken.pt", str(base_model_dir), LABELS)
    with pytest.raises(ModelError, match="needs --base-model .* and --labels"):
        load_any(tmp_path / "seed.pt")


def test_seed_import_refuses_pickled_objects(base_model_dir, tmp_path):
    """weights_only=True: a pickle carrying arbitrary objects is refused, never executed."""

    class Evil:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    torch.save({"l1.x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ModelError, match="evil.pt: not a readable state_dict"):
        import_seed_checkpoint(tmp_path / "evil.pt", str(base_model_dir), LABELS)
    assert not (tmp_path / "pwned").exists()


def test_build_tiny_classifier_has_labels_in_order():
    model, tokenizer = build_classifier("tiny", ["z", "a", "m"], train_texts=TEXTS * 10)
    cfg = model.config
    assert cfg.problem_type == "multi_label_classification"
    assert [cfg.id2label[i] for i in range(3)] == ["z", "a", "m"] and cfg.label2id["a"] == 1
    assert cfg.classifier_dropout == 0.3
    assert tokenizer("hello")["input_ids"][0] == tokenizer.cls_token_id


def test_tiny_vocab_is_the_same_on_every_call_and_spells_any_word():
    """tokenizers' WordPieceTrainer gave a different vocab on each call (4 of 4 on the demo texts)."""
    from toolkit.demo_corpus import generate_demo_corpus

    texts = generate_demo_corpus(n=600, seed=3)[0]
    vocabs = [train_wordpiece_tokenizer(texts, vocab_size=120).get_vocab() for _ in range(3)]
    assert vocabs[0] == vocabs[1] == vocabs[2]
    tokens = sorted(vocabs[0], key=vocabs[0].get)
    assert tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] and len(tokens) == 120
    words = tokens[tokens.index("##z") + 1:]  # after the alphabet: whole words, most frequent first
    assert words and all(not w.startswith("##") for w in words)
    tokenizer = train_wordpiece_tokenizer(texts, vocab_size=120)
    assert tokenizer.tokenize(f"I {words[0].upper()} zyxq 42") == ["i", words[0], "z", "##y", "##x", "##q", "4", "##2"]
    assert "[UNK]" not in tokenizer.tokenize(" ".join(texts[:50]))

def test_hub_name_offline_names_the_presets(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match=r"cannot load model 'no-such-org/no-such-model'.*offline preset \(minilm, tiny\)"):
        build_classifier("no-such-org/no-such-model", LABELS)


def test_load_classifier_rejects_non_multilabel_and_inconsistent_checkpoints(tiny_checkpoint, tmp_path):
    import shutil

    bad = tmp_path / "single"
    shutil.copytree(tiny_checkpoint, bad)
    config = json.loads((bad / "config.json").read_text())
    config["problem_type"] = "single_label_classification"
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="problem_type is 'single_label_classification'"):
        load_classifier(bad)

    swapped = tmp_path / "swapped"
    shutil.copytree(tiny_checkpoint, swapped)
    meta = json.loads((swapped / artifacts.CHECKPOINT_META).read_text())
    meta["labels"] = list(reversed(meta["labels"]))
    (swapped / artifacts.CHECKPOINT_META).write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="differ from config.json id2label"):
        load_classifier(swapped)

    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_checkpoint, corrupt)
    (corrupt / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(ModelError, match="model weights cannot be loaded"):
        load_classifier(corrupt)

    with pytest.raises(ModelError, match="no config.json"):
        load_classifier(tmp_path)


def test_build_on_a_classifier_with_other_labels_gets_a_fresh_head(tmp_path):
    """`toolkit train --model DIR` on an HF classifier fine-tuned on 3 labels, for a 5-label dataset: the
    head is replaced (the encoder kept), not a size-mismatch traceback."""
    from tiny_architectures import save_hf_classifier

    from toolkit.demo_corpus import generate_demo_corpus

    texts = generate_demo_corpus()[0][:300]
    source = save_hf_classifier("bert", texts, ["a", "b", "c"], tmp_path / "hf")
    labels = ["anger", "fear", "joy", "sadness", "surprise"]
    model, _ = build_classifier(str(source), labels)
    assert model.config.num_labels == 5 and [model.config.id2label[i] for i in range(5)] == labels
    head = [p for n, p in model.named_parameters() if n.endswith("classifier.bias")][0]
    assert tuple(head.shape) == (5,)
    from transformers import AutoModelForSequenceClassification
    original = AutoModelForSequenceClassification.from_pretrained(source)
    name = "bert.embeddings.word_embeddings.weight"
    assert torch.equal(dict(model.named_parameters())[name], dict(original.named_parameters())[name])
