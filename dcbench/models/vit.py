"""ViT-S/16 and ViT-B/16 in the timm / DINO parameter layout.

Why this layout and not torchvision's: DINO, MoCo v3 and timm release ViTs under timm's names
(`patch_embed.proj`, `cls_token`, `pos_embed`, `blocks.N.attn.qkv`, `blocks.N.mlp.fc1`,
`norm`), which load here with no rename; torchvision's ViT (`conv_proj`, `class_token`,
`encoder.layers.encoder_layer_N.self_attention.in_proj_weight`) would need a rename of every
key of every released file. timm itself is not a dependency: the module is a few lines.

Taps, as DINO's evaluations read them (eval_linear.py, eval_knn.py): `cls` (the last block's
CLS token after the final norm: DINO's kNN feature), `cls4` (the CLS tokens of the last four
blocks, each normed, concatenated: DINO's linear probe for ViT-S), `avgpool` (the mean of the
last block's normed patch tokens), `cls+avgpool` (both: DINO's linear probe for ViT-B) and
`patch` (the normed patch tokens as a (D, h, w) grid: what R-MAC pools). Inputs of another
side than 224 get the position embedding interpolated (bicubic), as DINO does; a side that is
not a multiple of 16 is zero-padded to the next one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from dcbench.layer_names import VIT_TAPS
from dcbench.models.trunk import Trunk

PATCH = 16


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=1e-6), Mlp(dim, 4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, in_channels: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, PATCH, PATCH)


class ViT(Trunk):
    FAMILY = "vit"
    INPUT_SIZE = 224
    SOBEL_BY_DEFAULT = False
    HEAD_PREFIXES = ("top_layer.", "head.")
    DEPTH, HEADS = 12, 0
    ROLES = {"probe": ("cls4", "cls+avgpool"), "embed": ("cls",), "map": ("patch",),
             "cluster": ("cls",)}

    def __init__(self, sobel: bool = False) -> None:
        super().__init__(sobel)
        dim, grid = self.FC_DIM, self.INPUT_SIZE // PATCH
        self.patch_embed = PatchEmbed(self.in_channels, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, dim))
        self.blocks = nn.ModuleList(Block(dim, self.HEADS) for _ in range(self.DEPTH))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        if not self.cls_token.is_meta:
            self.init_weights()

    def init_weights(self) -> None:
        """timm's / DINO's: truncated normal (std 0.02) for the tokens and Linear weights."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    @classmethod
    def tap_names(cls) -> tuple[str, ...]:
        return VIT_TAPS

    def position(self, h: int, w: int) -> torch.Tensor:
        """The position embedding for an h x w patch grid (interpolated off 224 px)."""
        grid = self.INPUT_SIZE // PATCH
        if (h, w) == (grid, grid):
            return self.pos_embed
        cls, patches = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        patches = patches.reshape(1, grid, grid, -1).permute(0, 3, 1, 2)
        patches = F.interpolate(patches.float(), size=(h, w), mode="bicubic",
                                align_corners=False).to(cls.dtype)
        return torch.cat([cls, patches.flatten(2).transpose(1, 2)], dim=1)

    def extract(self, x: torch.Tensor, taps: Sequence[str]) -> dict[str, torch.Tensor]:
        self.check_taps(taps)
        wanted = set(taps)
        if not wanted:
            return {}
        x = self.front(x)
        # a side that is not a multiple of the patch (R-MAC's query crops) is zero-padded at
        # the bottom and right to the next one, so no pixel is dropped and none is too small
        pad_h, pad_w = -x.shape[-2] % PATCH, -x.shape[-1] % PATCH
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        x = self.patch_embed.proj(x)
        b, d, h, w = x.shape
        x = torch.cat([self.cls_token.expand(b, -1, -1), x.flatten(2).transpose(1, 2)], dim=1)
        x = x + self.position(h, w)
        last_cls = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if "cls4" in wanted and i >= len(self.blocks) - 4:
                last_cls.append(self.norm(x)[:, 0])
        x = self.norm(x)
        out = {"cls": x[:, 0], "avgpool": x[:, 1:].mean(dim=1)}
        out["cls+avgpool"] = torch.cat([out["cls"], out["avgpool"]], dim=1)
        out["patch"] = x[:, 1:].transpose(1, 2).reshape(b, d, h, w)
        if last_cls:
            out["cls4"] = torch.cat(last_cls, dim=1)
        return {k: v for k, v in out.items() if k in wanted}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.extract(x, ["cls"])["cls"]

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.extract(x, ["patch"])["patch"]


class ViTSmall16(ViT):
    ARCH, FC_DIM, HEADS = "vit-s16", 384, 6


class ViTBase16(ViT):
    ARCH, FC_DIM, HEADS = "vit-b16", 768, 12

