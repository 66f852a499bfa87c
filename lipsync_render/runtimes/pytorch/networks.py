"""The SyncTalk_2D networks as torch modules with BatchNorm folded into the convs, and their uint8 input/output.

The full networks are the upstream modules of ``torch_networks.py`` (attribute for attribute, so a ``.pth``
state_dict loads) with every BatchNorm fused into the conv before it: the form the package's ONNX graphs have. The
tiny stand-ins mirror ``synth/architectures.py``'s tiny graphs. Everything here needs torch; it is imported only by
the torch backend.
"""

from __future__ import annotations

import itertools
import os

import torch
from torch import nn

from lipsync_render.contract import ROI_OFFSET, ROI_SIZE
from lipsync_render.model_input import MASK_COLS, MASK_ROWS
from lipsync_render.torch_networks import ENCODER_PREFIX, audio_encoder_model, load_checkpoint, unet_model


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fuse every BatchNorm2d into the Conv2d registered just before it (eval mode); the BatchNorm becomes Identity.

    Upstream registers each BatchNorm right after its conv (in a Sequential, or as ``convN``/``bnN`` attributes).
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    module.eval()
    pairs = []
    for parent in module.modules():
        for (conv_name, conv), (bn_name, bn) in itertools.pairwise(parent.named_children()):
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                pairs.append((parent, conv_name, conv, bn_name, bn))
    for parent, conv_name, conv, bn_name, bn in pairs:
        setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
        setattr(parent, bn_name, nn.Identity())
    return module


def folded_unet() -> nn.Module:
    """UNet-328 ('ave') with BatchNorm folded: every conv has a bias, weights still to be loaded."""
    return fold_batchnorm(unet_model())


def folded_audio_encoder() -> nn.Module:
    """The AVE audio encoder with BatchNorm folded."""
    return fold_batchnorm(audio_encoder_model())


def from_checkpoint(path: str | os.PathLike, encoder: bool = False) -> nn.Module:
    """A SyncTalk_2D ``.pth`` (UNet, or with ``encoder`` the AVE encoder) loaded strictly, then folded."""
    if encoder:
        return fold_batchnorm(load_checkpoint(audio_encoder_model(), path, prefix=ENCODER_PREFIX))
    return fold_batchnorm(load_checkpoint(unet_model(), path))


# Convs of the UNet by the part of the graph they read: the visual encoder reads only the face, the audio branch
# only the audio, the decoder both. Within each part the convs form one chain, so their order is fixed.
UNET_PARTS = {
    "visual": ("inc", "down1", "down2", "down3", "down4", "down5"),
    "audio": ("audio_model",),
    "both": ("fuse_conv", "up1", "up2", "up3", "up4", "up5", "outc"),
}


def convs_in_order(network: nn.Module, stages: tuple[str, ...] | None = None) -> list[nn.Conv2d]:
    """The network's convs in forward order: stage by stage, each in registration order (upstream's order)."""
    roots = [network] if stages is None else [getattr(network, stage) for stage in stages]
    return [m for root in roots for m in root.modules() if isinstance(m, nn.Conv2d)]


class TinyUNet(nn.Module):
    """The tiny stand-in UNet: per-channel affine of the face plus a per-item offset from the pooled audio."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1, 3, 1, 1))
        self.shift = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.audio = nn.Conv2d(32, 3, 1)

    def forward(self, visual, audio):
        face = visual[:, :3] * self.scale + self.shift
        return torch.sigmoid(face + self.audio(audio.mean(dim=(2, 3), keepdim=True)))


class TinyEncoder(nn.Module):
    """The tiny stand-in encoder: each mel bin averaged over time, one 1x1 conv 80->512 and ReLU."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Conv2d(80, 512, 1)

    def forward(self, mel):
        pooled = mel.transpose(1, 2).mean(dim=(2, 3), keepdim=True)
        return torch.relu(self.proj(pooled)).flatten(1)


class Uint8Unet(nn.Module):
    """uint8 328 crops (N, 328, 328, 3) + audio -> uint8 predictions (N, 320, 320, 3) and the float output's sum.

    The same arithmetic as ``model_input.visual_input`` and ``prediction_to_uint8``: float32 / 255 (a division, so
    bit-identical), the mask by multiplication with 0/1, the output x 255 in float32 and truncated to uint8. The
    sum is NaN when any output is, which is how a broken model is caught without copying floats back.
    """

    def __init__(self, unet: nn.Module, dtype: torch.dtype, channels_last: bool):
        super().__init__()
        self.unet = unet
        self.dtype = dtype
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        mask = torch.ones(1, 1, ROI_SIZE, ROI_SIZE)
        mask[..., MASK_ROWS, MASK_COLS] = 0
        self.register_buffer("mask", mask)

    def forward(self, crops, audio):
        roi = crops[:, ROI_OFFSET : ROI_OFFSET + ROI_SIZE, ROI_OFFSET : ROI_OFFSET + ROI_SIZE].permute(0, 3, 1, 2)
        face = roi.float() / 255.0
        visual = torch.cat([face, face * self.mask], dim=1)
        output = self.unet(
            visual.to(self.dtype).contiguous(memory_format=self.memory_format), audio.to(self.dtype)
        ).float()
        prediction = (output * 255.0).permute(0, 2, 3, 1).to(torch.uint8)
        return prediction, output.sum()


class FloatIO(nn.Module):
    """Float inputs in the network's dtype and memory format, float32 output and its sum."""

    def __init__(self, network: nn.Module, dtype: torch.dtype, channels_last: bool):
        super().__init__()
        self.network = network
        self.dtype = dtype
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def forward(self, *inputs):
        inputs = [x.to(self.dtype) for x in inputs]
        if inputs[0].dim() == 4:
            inputs[0] = inputs[0].contiguous(memory_format=self.memory_format)
        output = self.network(*inputs).float()
        return output, output.sum()
