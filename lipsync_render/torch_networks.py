"""The SyncTalk_2D networks as PyTorch modules (UNet-328 'ave', AVE audio encoder), and loading their checkpoints.

The modules mirror upstream SyncTalk_2D ``unet_328.py`` and ``data_utils/ave/models/audioEnc.py`` attribute
for attribute, so real checkpoints' state_dicts load unchanged. ``package/export.py`` exports them to ONNX; the
torch backend (``runtimes/pytorch/networks.py``) folds their BatchNorms and runs them.

PyTorch is an optional extra (``pip install 'lipsync-render[export]'``): the classes are defined on first use, so
importing this module does not need torch.
"""

from __future__ import annotations

import os
from pathlib import Path

from lipsync_render.errors import LipsyncError, PackageError

ENCODER_PREFIX = "audio_encoder."


def import_torch():
    """Import torch, or explain how to get it (torch is an optional extra)."""
    try:
        import torch
    except ImportError:
        raise LipsyncError("Exporting checkpoints needs PyTorch: pip install 'lipsync-render[export]'.") from None
    return torch


def _define_modules(torch) -> dict:
    """The upstream module classes, defined lazily so that importing this file does not need torch."""
    nn = torch.nn
    F = torch.nn.functional

    class InvertedResidual(nn.Module):
        def __init__(self, inp, oup, stride, use_res_connect, expand_ratio=6):
            super().__init__()
            self.stride = stride
            self.use_res_connect = use_res_connect
            hidden = inp * expand_ratio
            self.conv = nn.Sequential(
                nn.Conv2d(inp, hidden, 1, 1, 0, bias=False),
                nn.BatchNorm2d(hidden),
                nn.ReLU(inplace=True),
                nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
                nn.BatchNorm2d(hidden),
                nn.ReLU(inplace=True),
                nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
                nn.BatchNorm2d(oup),
            )

        def forward(self, x):
            return x + self.conv(x) if self.use_res_connect else self.conv(x)

    class DoubleConvDW(nn.Module):
        def __init__(self, in_channels, out_channels, stride=2):
            super().__init__()
            self.double_conv = nn.Sequential(
                InvertedResidual(in_channels, out_channels, stride=stride, use_res_connect=False, expand_ratio=2),
                InvertedResidual(out_channels, out_channels, stride=1, use_res_connect=True, expand_ratio=2),
            )

        def forward(self, x):
            return self.double_conv(x)

    class InConvDw(nn.Module):
        def __init__(self, in_channels, out_channels):
            super().__init__()
            self.inconv = nn.Sequential(
                InvertedResidual(in_channels, out_channels, stride=1, use_res_connect=False, expand_ratio=2)
            )

        def forward(self, x):
            return self.inconv(x)

    class Down(nn.Module):
        def __init__(self, in_channels, out_channels):
            super().__init__()
            # Named after a max-pool the architecture no longer has; the name is in the checkpoints.
            self.maxpool_conv = nn.Sequential(DoubleConvDW(in_channels, out_channels, stride=2))

        def forward(self, x):
            return self.maxpool_conv(x)

    class Up(nn.Module):
        def __init__(self, in_channels, out_channels):
            super().__init__()
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            self.conv = DoubleConvDW(in_channels, out_channels, stride=1)

        def forward(self, x1, x2):
            x1 = self.up(x1)
            diff_y = x2.shape[2] - x1.shape[2]
            diff_x = x2.shape[3] - x1.shape[3]
            x1 = F.pad(x1, [diff_x // 2, diff_x - diff_x // 2, diff_y // 2, diff_y - diff_y // 2])
            return self.conv(torch.cat([x1, x2], dim=1))

    class OutConv(nn.Module):
        def __init__(self, in_channels, out_channels):
            super().__init__()
            self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)

        def forward(self, x):
            return self.conv(x)

    class AudioConvAve(nn.Module):
        """Audio branch for AVE features [N, 32, 16, 16] -> [N, 512, 10, 10]."""

        def __init__(self):
            super().__init__()
            ch = [32, 64, 128, 256, 512]
            self.conv1 = InvertedResidual(ch[0], ch[1], stride=1, use_res_connect=False, expand_ratio=2)
            self.conv2 = InvertedResidual(ch[1], ch[2], stride=1, use_res_connect=False, expand_ratio=2)
            self.conv3 = nn.Conv2d(ch[2], ch[3], kernel_size=3, padding=1, stride=1)
            self.bn3 = nn.BatchNorm2d(ch[3])
            self.conv4 = InvertedResidual(ch[3], ch[3], stride=1, use_res_connect=True, expand_ratio=2)
            self.conv5 = nn.Conv2d(ch[3], ch[4], kernel_size=3, padding=3, stride=2)
            self.bn5 = nn.BatchNorm2d(ch[4])
            self.relu = nn.ReLU()
            self.conv6 = InvertedResidual(ch[4], ch[4], stride=1, use_res_connect=True, expand_ratio=2)
            self.conv7 = InvertedResidual(ch[4], ch[4], stride=1, use_res_connect=True, expand_ratio=2)

        def forward(self, x):
            x = self.conv1(x)
            x = self.conv2(x)
            x = self.relu(self.bn3(self.conv3(x)))
            x = self.conv4(x)
            x = self.relu(self.bn5(self.conv5(x)))
            x = self.conv6(x)
            return self.conv7(x)

    class Model(nn.Module):
        """UNet-328: visual [N, 6, 320, 320] + audio [N, 32, 16, 16] -> [N, 3, 320, 320] in (0, 1)."""

        def __init__(self, n_channels=6, mode="ave"):
            super().__init__()
            if mode != "ave":
                raise ValueError(f"only the 'ave' audio mode is supported, not {mode!r}")
            self.n_channels = n_channels
            ch = [32, 64, 128, 256, 512]
            self.audio_model = AudioConvAve()
            self.fuse_conv = nn.Sequential(
                DoubleConvDW(ch[4] * 2, ch[4], stride=1),
                DoubleConvDW(ch[4], ch[3], stride=1),
            )
            self.inc = InConvDw(n_channels, ch[0])
            self.down1 = Down(ch[0], ch[0])
            self.down2 = Down(ch[0], ch[1])
            self.down3 = Down(ch[1], ch[2])
            self.down4 = Down(ch[2], ch[3])
            self.down5 = Down(ch[3], ch[4])
            self.up1 = Up(ch[4], ch[3] // 2)
            self.up2 = Up(ch[3], ch[2] // 2)
            self.up3 = Up(ch[2], ch[1] // 2)
            self.up4 = Up(ch[1], ch[0])
            self.up5 = Up(ch[1], ch[0] // 2)
            self.outc = OutConv(ch[0] // 2, 3)

        def forward(self, x, audio_feat):
            x1 = self.inc(x)
            x2 = self.down1(x1)
            x3 = self.down2(x2)
            x4 = self.down3(x3)
            x5 = self.down4(x4)
            x6 = self.down5(x5)
            audio_feat = self.audio_model(audio_feat)
            x6 = self.fuse_conv(torch.cat([x6, audio_feat], dim=1))
            x = self.up1(x6, x5)
            x = self.up2(x, x4)
            x = self.up3(x, x3)
            x = self.up4(x, x2)
            x = self.up5(x, x1)
            return torch.sigmoid(self.outc(x))

    class Conv2d(nn.Module):
        """Conv + BatchNorm (+ input when residual) + ReLU, the AVE encoder's unit."""

        def __init__(self, cin, cout, kernel_size, stride, padding, residual=False, leakyReLU=False):
            super().__init__()
            self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel_size, stride, padding), nn.BatchNorm2d(cout))
            self.act = nn.LeakyReLU(0.02) if leakyReLU else nn.ReLU()
            self.residual = residual

        def forward(self, x):
            out = self.conv_block(x)
            if self.residual:
                out = out + x
            return self.act(out)

    class AudioEncoder(nn.Module):
        """AVE encoder: mel window [N, 1, 80, 16] -> [N, 512]."""

        def __init__(self):
            super().__init__()
            self.audio_encoder = nn.Sequential(
                Conv2d(1, 32, kernel_size=3, stride=1, padding=1),
                Conv2d(32, 32, kernel_size=3, stride=1, padding=1, residual=True),
                Conv2d(32, 32, kernel_size=3, stride=1, padding=1, residual=True),
                Conv2d(32, 64, kernel_size=3, stride=(3, 1), padding=1),
                Conv2d(64, 64, kernel_size=3, stride=1, padding=1, residual=True),
                Conv2d(64, 64, kernel_size=3, stride=1, padding=1, residual=True),
                Conv2d(64, 128, kernel_size=3, stride=3, padding=1),
                Conv2d(128, 128, kernel_size=3, stride=1, padding=1, residual=True),
                Conv2d(128, 128, kernel_size=3, stride=1, padding=1, residual=True),
                Conv2d(128, 256, kernel_size=3, stride=(3, 2), padding=1),
                Conv2d(256, 256, kernel_size=3, stride=1, padding=1, residual=True),
                Conv2d(256, 512, kernel_size=3, stride=1, padding=0),
                Conv2d(512, 512, kernel_size=1, stride=1, padding=0),
            )

        def forward(self, x):
            return self.audio_encoder(x).squeeze(2).squeeze(2)

    return {"Model": Model, "AudioEncoder": AudioEncoder}


_modules: dict | None = None


def modules() -> dict:
    """The module classes {'Model': UNet-328, 'AudioEncoder': AVE encoder}; needs torch."""
    global _modules
    if _modules is None:
        _modules = _define_modules(import_torch())
    return _modules


def unet_model():
    """A fresh UNet-328 in 'ave' mode (upstream ``Model(6, mode='ave')``)."""
    return modules()["Model"](6, mode="ave")


def audio_encoder_model():
    """A fresh AVE audio encoder (upstream ``AudioEncoder()``)."""
    return modules()["AudioEncoder"]()


def load_state_dict(path: str | os.PathLike, prefix: str = "") -> dict:
    """A checkpoint's state_dict: unwrapped from {'state_dict': ...}, without DataParallel's 'module.',
    with ``prefix`` added to keys that lack it."""
    torch = import_torch()
    path = Path(path)
    if not path.is_file():
        raise PackageError(f"Checkpoint {path} does not exist.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and runtime errors alike
        raise PackageError(f"Cannot read checkpoint {path} ({type(exc).__name__}: {exc}).") from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PackageError(f"Checkpoint {path} does not hold a state_dict of tensors.")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    return {k if k.startswith(prefix) else prefix + k: v for k, v in state.items()}


def load_checkpoint(model, path: str | os.PathLike, prefix: str = ""):
    """Load a checkpoint into ``model`` strictly and switch it to eval mode; a mismatch names the file."""
    state = load_state_dict(path, prefix)
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        details = []
        if result.missing_keys:
            details.append(f"{len(result.missing_keys)} missing keys such as {result.missing_keys[0]!r}")
        if result.unexpected_keys:
            details.append(f"{len(result.unexpected_keys)} unexpected keys such as {result.unexpected_keys[0]!r}")
        raise PackageError(
            f"Checkpoint {path} does not fit the {type(model).__name__} architecture ({' and '.join(details)})."
        )
    return model.eval()
