"""The seed notebooks' classifier modules, declared exactly as the seeds define them.

test_modeling checks the state_dict import against them and test_export the exported graph, so
both compare with the original architecture, not with our own reading of it.
"""
from torch import nn
from transformers import BertModel


class BERTClass(nn.Module):
    """Seed (a): BertModel -> Dropout(0.3) -> Linear on the pooled output."""

    def __init__(self, config, n_labels):
        super().__init__()
        self.l1 = BertModel(config)
        self.l2 = nn.Dropout(0.3)
        self.l3 = nn.Linear(config.hidden_size, n_labels)

    def forward(self, ids, mask, token_type_ids):
        _, output_1 = self.l1(ids, attention_mask=mask, token_type_ids=token_type_ids, return_dict=False)
        return self.l3(self.l2(output_1))


class SeedCLSClassifier(nn.Module):
    """Seed (b), named EmotionClassifier in the seed notebook (renamed here: `toolkit.runtime.EmotionClassifier`
    is the runtime class): the CLS vector of last_hidden_state -> Dropout -> Linear; the pooler is never used."""

    def __init__(self, config, n_labels):
        super().__init__()
        self.transformer = BertModel(config)
        self.dropout = nn.Dropout(0.3)
        self.classifier = nn.Linear(config.hidden_size, n_labels)

    def forward(self, input_ids, attention_mask):
        output = self.transformer(input_ids=input_ids, attention_mask=attention_mask)
        return self.classifier(self.dropout(output.last_hidden_state[:, 0]))
