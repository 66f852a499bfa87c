"""Export SyncTalk_2D PyTorch checkpoints (UNet-328 'ave', AVE audio encoder) to ONNX (reference spec §2, §4).

The networks and checkpoint loading are ``torch_networks.py``'s (the upstream modules, attribute for attribute, so
real checkpoints' state_dicts load unchanged). Every export is checked with ONNX Runtime on random inputs before
it is kept (``parity``).

PyTorch is an optional extra (``pip install 'lipsync-render[export]'``), imported only when exporting.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from pathlib import Path

from lipsync_render.contract import AUDIO_ENCODER, UNET
from lipsync_render.errors import OptionError, PackageError, RenderError
from lipsync_render.package.parity import UNCHECKED, Parity, parity
from lipsync_render.paths import honour_umask, output_problem
from lipsync_render.torch_networks import ENCODER_PREFIX, audio_encoder_model, import_torch, load_checkpoint, unet_model

OPSET = 17
UNET_FILE = "unet.onnx"
ENCODER_FILE = "audio_encoder.onnx"


def export_unet(
    checkpoint: str | os.PathLike, dest: str | os.PathLike, check: bool = True, tolerance: float | None = None
) -> Parity:
    """Export a UNet-328 checkpoint to ONNX at ``dest``, with its parity check."""
    torch = import_torch()
    model = load_checkpoint(unet_model(), checkpoint)
    generator = torch.Generator().manual_seed(0)
    visual = torch.rand(2, *UNET.inputs[0], generator=generator)
    audio = torch.rand(2, *UNET.inputs[1], generator=generator) * 2  # AVE features are >= 0, mostly below 2
    return _export(
        model,
        (visual[:1], audio[:1]),
        Path(dest),
        input_names=["input", "audio"],
        output_names=["output"],
        batch_axis="batch",
        check_inputs=(visual, audio) if check else None,
        tolerance=tolerance,
    )


def export_audio_encoder(
    checkpoint: str | os.PathLike, dest: str | os.PathLike, check: bool = True, tolerance: float | None = None
) -> Parity:
    """Export an AVE encoder checkpoint (keys with or without 'audio_encoder.') to ONNX at ``dest``."""
    torch = import_torch()
    model = load_checkpoint(audio_encoder_model(), checkpoint, prefix=ENCODER_PREFIX)
    generator = torch.Generator().manual_seed(0)
    mel = torch.rand(3, *AUDIO_ENCODER.inputs[0], generator=generator) * 8 - 4  # normalised mel lies in [-4, 4]
    return _export(
        model,
        (mel[:1],),
        Path(dest),
        input_names=["mel_spectrogram"],
        output_names=["audio_features"],
        batch_axis="batch_size",
        check_inputs=(mel,) if check else None,
        tolerance=tolerance,
    )


def _export(
    model,
    example: tuple,
    dest: Path,
    input_names: list[str],
    output_names: list[str],
    batch_axis: str,
    check_inputs: tuple | None,
    tolerance: float | None = None,
) -> Parity:
    """torch.onnx.export into a temporary sibling, parity-check it, then move it into place."""
    torch = import_torch()
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".onnx", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    honour_umask(tmp)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The TorchScript exporter is deprecated in favour of the dynamo one, which needs onnxscript.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                model,
                example,
                str(tmp),
                input_names=input_names,
                output_names=output_names,
                dynamic_axes={name: {0: batch_axis} for name in input_names + output_names},
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        result = parity(model, tmp, check_inputs, tolerance) if check_inputs is not None else UNCHECKED
        if result.checked and not result.ok:
            raise PackageError(
                f"The ONNX export {dest} differs from a float64 run of its PyTorch model by up to "
                f"{result.onnx_error:.3g}, above the limit of {result.limit:.3g} (PyTorch fp32 itself is "
                f"{result.torch_error:.3g} from it); it was not written (--parity-tolerance accepts a larger "
                "difference, --skip-check skips the check)."
            )
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
    return result


def export_onnx(
    out_dir: str | os.PathLike,
    unet: str | os.PathLike | None = None,
    encoder: str | os.PathLike | None = None,
    check: bool = True,
    tolerance: float | None = None,
) -> dict[str, tuple[Path, Parity]]:
    """Export the given checkpoints into ``out_dir`` as unet.onnx / audio_encoder.onnx.

    Returns {'unet' | 'encoder': (onnx path, parity check)}; ``tolerance`` replaces the fp32-noise limit.
    """
    if unet is None and encoder is None:
        raise PackageError(
            "Nothing to export: give a UNet checkpoint (--unet) and/or an encoder checkpoint (--encoder)."
        )
    if tolerance is not None and not (math.isfinite(tolerance) and tolerance >= 0):
        raise OptionError(f"--parity-tolerance must be a finite number of at least 0 (got {tolerance}).")
    out_dir = Path(out_dir).expanduser()
    planned = [
        out_dir / UNET_FILE if unet is not None else None,
        out_dir / ENCODER_FILE if encoder is not None else None,
    ]
    if out_dir.is_dir():  # a folder still to be made holds no input and no file to replace
        problem = output_problem(planned, (unet, encoder))
        if problem:
            raise RenderError(problem)
    results = {}
    if unet is not None:
        dest = out_dir / UNET_FILE
        results["unet"] = (dest, export_unet(unet, dest, check, tolerance))
    if encoder is not None:
        dest = out_dir / ENCODER_FILE
        results["encoder"] = (dest, export_audio_encoder(encoder, dest, check, tolerance))
    return results
