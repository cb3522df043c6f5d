"""The IP Insights network in PyTorch: entity embedding, IPv4 prefix encoder, dot-product score.

* Entity vector: one row of ``entity`` (``num_entity_vectors x vector_dim``), chosen by hashing the
  entity string (:class:`~seclake_ml.ipinsights.encoding.EncoderSpec`).
* IP vector: the sum of one row per prefix length from ``ip_table`` (all prefix blocks concatenated),
  then ``num_ip_encoder_layers`` fully connected ``vector_dim -> vector_dim`` layers with ReLU
  between them (none after the last one, so the IP vector can take any sign).
* Score: ``dot_product = <entity vector, IP vector>``, the log-odds that the pair is real rather than
  a negative sample. Higher means more normal.

The two tables are plain parameters that the trainer updates row-sparsely (only rows in the batch);
the layers are ordinary dense modules.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seclake_ml.ipinsights.encoding import EncoderSpec

__all__ = ["IPInsightsNet"]

# Initial scale of the table rows: small, so that untrained rows add little to a score.
ENTITY_INIT_STD = 0.05
IP_INIT_STD = 0.01


class IPInsightsNet(nn.Module):
    """Entity and IPv4 encoders whose dot product scores a pair.

    :param spec: table sizes and hashing (see :class:`EncoderSpec`).
    :param num_ip_encoder_layers: fully connected layers after the prefix sum.
    :param seed: initialisation seed.
    """

    def __init__(self, spec: EncoderSpec, num_ip_encoder_layers: int, seed: int = 0) -> None:
        super().__init__()
        self.spec = spec
        d = spec.vector_dim
        gen = torch.Generator().manual_seed(int(seed))
        self.entity = nn.Parameter(torch.randn(spec.num_entity_vectors, d, generator=gen) * ENTITY_INIT_STD)
        self.ip_table = nn.Parameter(torch.randn(spec.ip_table_rows, d, generator=gen) * IP_INIT_STD)
        self.layers = nn.ModuleList()
        for _ in range(int(num_ip_encoder_layers)):
            layer = nn.Linear(d, d)
            bound = 1.0 / d**0.5
            with torch.no_grad():
                # Identity plus noise: the encoder starts as (roughly) the plain prefix sum.
                layer.weight.copy_(torch.eye(d) + (torch.rand(d, d, generator=gen) * 2 - 1) * bound * 0.1)
                layer.bias.copy_((torch.rand(d, generator=gen) * 2 - 1) * bound * 0.1)
            self.layers.append(layer)

    # ------------------------------------------------------------------ pieces
    def ip_layers(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the fully connected layers to summed prefix embeddings ``x`` (``n x d``)."""
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = F.relu(x)
        return x

    def encode_ips(self, prefix_rows: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """IP vectors for ``(n, num_prefixes)`` rows of ``table`` (default: the full IP table)."""
        t = self.ip_table if table is None else table
        return self.ip_layers(F.embedding_bag(prefix_rows, t, mode="sum"))

    def forward(self, entity_rows: torch.Tensor, prefix_rows: torch.Tensor) -> torch.Tensor:
        """``dot_product`` for each pair: entity rows ``(n,)`` and IP prefix rows ``(n, num_prefixes)``."""
        e = F.embedding(entity_rows, self.entity)
        return (e * self.encode_ips(prefix_rows)).sum(dim=1)

    # ------------------------------------------------------------------ export
    def numpy_arrays(self) -> dict[str, np.ndarray]:
        """All learned arrays as float32 NumPy arrays (the artifact's content)."""
        out = {
            "entity_table": self.entity.detach().cpu().numpy().astype(np.float32, copy=True),
            "ip_table": self.ip_table.detach().cpu().numpy().astype(np.float32, copy=True),
        }
        for i, layer in enumerate(self.layers):
            out[f"ip_layer_{i}_weight"] = layer.weight.detach().cpu().numpy().astype(np.float32, copy=True)
            out[f"ip_layer_{i}_bias"] = layer.bias.detach().cpu().numpy().astype(np.float32, copy=True)
        return out
