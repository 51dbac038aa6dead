"""The MiniLM encoder as one TorchScript file: BERT, mean pooling over the real tokens
and L2 normalisation, which is what ``SentenceTransformer.encode`` computes for
all-MiniLM-L6-v2 (modules Transformer, Pooling with mean tokens, Normalize).

The file takes ``input_ids`` and ``attention_mask`` (int64, batch × tokens, any token
count up to the model's 512 positions) and returns ``embedding`` (float32, batch × 384).
Imported by training and tests only: workers load the TorchScript file, not this.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch.nn import functional

from streamcompose.runtimes.torch_runtime import torchscript_allowed

from .steps import max_seq_length, model_dir


class MeanPooledEncoder(torch.nn.Module):
    """A BERT model followed by masked mean pooling and L2 normalisation."""

    def __init__(self, bert: torch.nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        tokens = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return functional.normalize(pooled, p=2.0, dim=1)


def load_encoder(folder: Path | None = None) -> MeanPooledEncoder:
    """The encoder in eager PyTorch, with the packaged weights. Eager attention: the
    default (SDPA) chooses its path from the mask's values in Python, which a trace
    would freeze."""
    from transformers import AutoModel
    from transformers.utils import logging

    logging.disable_progress_bar()
    bert = AutoModel.from_pretrained(str(folder or model_dir()), attn_implementation="eager")
    return MeanPooledEncoder(bert).eval()


def export_encoder(path: Path) -> str:
    """Trace the encoder into a TorchScript file at ``path``; returns a summary.

    The example batch has a padded row: with a mask of ones only, the trace would record
    the branch that skips masking. Tracing warns that Python booleans were taken from
    tensors (those branches) and that torch.jit is deprecated; both are expected here.
    """
    folder = model_dir()
    encoder = load_encoder(folder)
    ids = torch.randint(1000, 2000, (2, 16))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    with warnings.catch_warnings(), torchscript_allowed(), torch.no_grad():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        traced = torch.jit.trace(encoder, (ids, mask), check_trace=False)
        torch.jit.save(traced, str(path))
    params = sum(p.numel() for p in encoder.parameters())
    return (f"all-MiniLM-L6-v2 from {folder}: {params / 1e6:.1f}M parameters, "
            f"max_seq_length {max_seq_length(folder)}")
