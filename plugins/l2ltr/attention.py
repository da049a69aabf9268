"""L2LTR's encoder block with self-cross attention (keys from the previous block's input)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LN_EPS = 1e-6


class SelfCrossAttention(nn.Module):
    """Multi-head attention with queries/values from X and keys from KEY_SOURCE.

    ``softmax(Q K^T / sqrt(d)) V`` per head, with Q = W_q x, V = W_v x, K = W_k key_source,
    then an output projection. With KEY_SOURCE = X it is ordinary self-attention.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.view(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, key_source: torch.Tensor) -> torch.Tensor:
        """(B, N, C) queries/values and (B, N, C) key source -> (B, N, C)."""
        q, k, v = self._heads(self.q(x)), self._heads(self.k(key_source)), self._heads(self.v(x))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).flatten(2))


class SelfCrossBlock(nn.Module):
    """Pre-norm transformer block: x + Attn(LN1(x), LN2(keys)), then x + MLP(LN3(x)).

    With ``self_cross=False`` there is no LN2 and keys come from LN1(x): a standard ViT block.
    """

    def __init__(
        self, dim: int, num_heads: int, mlp_dim: int, dropout: float, self_cross: bool = True
    ) -> None:
        from timm.layers import Mlp  # imported on use: the CLI starts faster

        super().__init__()
        self.self_cross = self_cross
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.norm_key = nn.LayerNorm(dim, eps=LN_EPS) if self_cross else None
        self.attn = SelfCrossAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, mlp_dim, act_layer=nn.GELU, drop=dropout)

    def forward(self, x: torch.Tensor, key_source: torch.Tensor) -> torch.Tensor:
        """Block output for input X; KEY_SOURCE is ignored without self-cross attention."""
        h = self.norm1(x)
        keys = self.norm_key(key_source) if self.norm_key is not None else h
        x = x + self.attn(h, keys)
        return x + self.mlp(self.norm2(x))


class SelfCrossEncoder(nn.Module):
    """Blocks where block l takes keys from the input of block l-1 (blocks 1 and 2: h_0)."""

    def __init__(
        self, dim: int, depth: int, num_heads: int, mlp_dim: int, dropout: float, self_cross: bool
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SelfCrossBlock(dim, num_heads, mlp_dim, dropout, self_cross) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)

    def forward(self, h0: torch.Tensor) -> torch.Tensor:
        """Embeddings h_0 -> LN_final(h_L)."""
        x, previous = h0, h0
        for block in self.blocks:
            x, previous = block(x, previous), x
        return self.norm(x)
