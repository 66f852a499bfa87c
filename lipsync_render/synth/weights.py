"""Weights built by construction: the true SyncTalk_2D graphs, made to visibly talk without training.

Trained weights are not available, and random weights paint a noise patch over the mouth. `ConstructedWeights`
keeps the exact architectures (same graphs, shapes, parameter counts and cost; only the values differ) and sets
the weights by hand so that the UNet passes the face through and opens a dark mouth as the audio gets loud.

Audio encoder (`enc.*`, mel window [1,80,16] -> 512 features), "loudness as a spatial pattern":

- block1 turns each mel value x (in [-4, 4], -4 = silence) into 16 hinge channels ReLU(x - t_k), t_k = -4,
  -3.5, ..., 3.5, and block4 sums them with the slopes of exp(x) - exp(-4), so together they compute a
  piecewise-linear approximation of exp(x) - exp(-4): linear mel *amplitude*, exactly 0 in silence. Amplitude
  tracks the audio RMS much better than log-mel does.
- The strided blocks (4, 7, 10, 12) are used as box filters that partition their input: the loudness L is the
  sum of that amplitude over mel bins 0..67 (the stride pattern never reaches bins 68..79) and over mel frames
  5..7 of the 16-frame window only (frame centres about 40j+62..40j+88 ms for window j). Window j is row j+1
  of the feature table, the centre row (time step 8) of video frame j+1, whose 40 ms span is 40j+40..40j+80 ms:
  the loudness is that frame's own sound, not a 200 ms average. Scaled so that loud speech is about 1
  (LOUDNESS_REFERENCE and the mouth threshold were tuned on real speech and the example clips so that mouth
  darkness follows the RMS of each frame's 40 ms of audio: r = 0.82..0.89).
- block12 adds two hinges of L so block13 can apply a soft cap (slope 1 up to 1.0, 0.5 up to 2.0, then flat:
  at most 1.5); loud shouts do not grow the mouth past the mouth area.
- block13 writes L times a fixed pattern P into the 512 features (both halves alike). The pipeline reshapes a
  frame's 16 feature rows C-order into the UNet's [32,16,16] audio input, so feature f lands at pixel
  (f // 16, f % 16) of a 16x16 map: the pattern *is* a picture, and this is where the mouth's position comes
  from (the UNet has no coordinate input of its own). Residual blocks (2, 3, 5, 6, 8, 9, 11) have a zero
  branch: ReLU(x + 0) = x for x >= 0.

UNet (`unet.*`):

- Face pass-through: `inc` copies input channels 0-2 (the unmasked ROI, v in [0,1]) into x1, the full-resolution
  skip. In `up5.conv1` the expand conv makes hinge channels ReLU(t_k - v) / ReLU(v - t_k) per colour (39 knots
  plus v itself), the depthwise conv keeps them, and the project conv weights them into a piecewise-linear
  logit(v): sigmoid(logit(v)) then gives back v. Knots and slopes are least-squares fitted at the 256 levels
  p/255 with target (p + 0.5)/255, so that the reference's truncating uint8 conversion returns exactly p:
  the face comes back bit-exact wherever the mouth is closed. `up5.conv2` has a zero branch (identity) and
  `outc` picks the three logit channels.
- Mouth: `unet.audio` takes a weighted sum of the 16 time steps (time step 8 = the frame's own window weighted
  1, step 7 = the previous frame 0.5, others 0) and routes it, through centre taps and zero residual branches,
  to conv5 (stride 2, pad 3), whose centre tap samples the 16x16 map at even positions into the 10x10
  bottleneck. The result, Lw * bump, is concatenated with x6 and carried in channel 0 through `fuse1`, `fuse2`
  and `up1`..`up4`; the decoder's bilinear x2 upsamplings spread the bump over the face, and the depthwise
  convs shape it (up1 shifts it down 1 pixel at 20x20 = 17 px at 320x320; [1,2,1]/4 blurs: columns at up3,
  rows and columns at up4). The bump is separable: a single bottleneck row (a tent about 35 px each side of
  row 158) times a flat-topped run of 4 columns (centred on col 160). At loudness 1 the mouth spans about rows
  130..187 x cols 106..213; at the cap, 126..191 x 98..221.
- In `up5.conv1`, two more hidden channels compute the gate clamp(Lw * bump - c, 0, w) = ReLU(M - c) -
  ReLU(M - c - w): zero in silence and outside the mouth; the region where it is positive, {bump > c / Lw},
  grows with loudness (taller, and wider up to the flat top). The project conv subtracts it, scaled per
  colour, from the logits, which darkens the face towards a dark red mouth (the logit shift keeps a
  darker or lighter face's own tone).
- Everything not needed is zero: the down path (x2..x6 and the skips they feed), every residual branch, and
  all other channels. Zeros make silence an exact pass-through and cost nothing extra: dense Conv kernels do
  the same work whatever the values, so the models run at the real architecture's cost. (Seeded noise would
  leak into the output.) The seed is accepted for the WeightSource factory signature; the construction is
  deterministic.

Tiny stand-in models (`tiny.*` names) are not constructed: their convs get zeros.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lipsync_render.synth.architectures import UNET_CHANNELS

Fill = Callable[[np.ndarray, np.ndarray], None]

# ------------------------------------------------------------------------------------------ constants

MEL_SILENCE = -4.0
EXP_KNOTS = np.arange(-4.0, 4.0, 0.5)  # hinge positions of the piecewise-linear exp(mel) in enc.block1
LOUDNESS_REFERENCE = 100.0  # summed amplitude (68 bins x 3 mel frames) that reads as loudness 1.0
SOFT_CAP = ((1.0, 0.5), (2.0, 0.5))  # (knee, slope removed there): slope 1 -> 0.5 -> 0, at most 1.5
TIME_WEIGHTS = {7: 0.5 / 1.5, 8: 1.0 / 1.5}  # UNet time steps: the frame's own window and the previous one

# The bump at the 10x10 bottleneck: one row times a flat-topped run of columns (outer product), and the 3x3
# depthwise kernels (outer products of these 1D kernels) applied to it at each decoder stage.
BUMP_ROWS = np.array([0, 0, 0, 0, 1, 0, 0, 0, 0, 0], dtype=np.float64)
BUMP_COLS = np.array([0, 0, 0, 0.25, 1, 1, 0.25, 0, 0, 0], dtype=np.float64)
_KEEP = (0.0, 1.0, 0.0)
_SHIFT_DOWN = (1.0, 0.0, 0.0)  # out[y] = in[y - 1]
_BLUR = (0.25, 0.5, 0.25)
DECODER_KERNELS = {  # stage -> (row kernel, column kernel)
    "fuse1": (_KEEP, _KEEP),
    "fuse2": (_KEEP, _KEEP),
    "up1": (_SHIFT_DOWN, _KEEP),
    "up2": (_KEEP, _KEEP),
    "up3": (_KEEP, _BLUR),
    "up4": (_BLUR, _BLUR),
}

MOUTH_THRESHOLD = 0.3  # the mouth opens where Lw * bump > c; bump peaks at 1, so it opens from Lw = 0.3
MOUTH_RAMP = 0.12  # M above c over which the darkening fades in (soft edge), then it saturates
MOUTH_LOGIT_SHIFT = np.array([2.0, 2.6, 2.2])  # B, G, R logit drop inside the mouth: skin -> dark red

LOGIT_HINGES = 39  # knots of the piecewise-linear logit per colour (plus the linear term)
# `--weights cast`: a known colour cast, added to the B, G, R output logits (a trained model's tint, on demand;
# on skin it is about -19, -3 and +11 levels), the showcase and test of --colour-match.
CAST_LOGITS = (-0.30, -0.05, 0.25)


# ------------------------------------------------------------------------------------- weight source


class ConstructedWeights:
    """WeightSource whose UNet passes the face through and opens a dark mouth with loud audio."""

    def __init__(self, seed: int = 0, cast: tuple[float, float, float] = (0.0, 0.0, 0.0)):
        self.seed = seed
        self._fills: dict[str, Fill] = {**_encoder_fills(), **_unet_fills(cast)}

    def conv(self, name: str, cout: int, cin_per_group: int, k: int, groups: int) -> tuple[np.ndarray, np.ndarray]:
        weight = np.zeros((cout, cin_per_group, k, k), dtype=np.float32)
        bias = np.zeros(cout, dtype=np.float32)
        fill = self._fills.get(name)
        if fill is not None:
            fill(weight, bias)
        return weight, bias

    @property
    def constructed_convs(self) -> frozenset[str]:
        """Names of the convs given non-zero weights (all others are zero)."""
        return frozenset(self._fills)


# --------------------------------------------------------------------------------------------- encoder


def exp_slopes() -> np.ndarray:
    """Weights of the hinges ReLU(x - t_k) whose sum interpolates exp(x) - exp(-4) at the knots (and at 4)."""
    knots = np.append(EXP_KNOTS, 4.0)
    segment_slopes = np.diff(np.exp(knots)) / np.diff(knots)
    return np.diff(segment_slopes, prepend=0.0)


def mouth_pattern() -> np.ndarray:
    """The 16x16 audio-map pattern (peak 1 after the decoder) that conv5's centre tap samples at even positions.

    conv5 (3x3, stride 2, pad 3) with only its centre tap reads input pixel (2i - 2, 2j - 2) for bottleneck
    cell (i, j), so the 10x10 bump goes to those pixels; it is scaled so that the decoded bump peaks at 1.
    """
    rows, cols = decoded_bump_profiles(normalise=False)
    bump10 = np.outer(BUMP_ROWS, BUMP_COLS) / (rows.max() * cols.max())
    pattern = np.zeros((16, 16))
    for i in range(1, 9):
        for j in range(1, 9):
            pattern[2 * i - 2, 2 * j - 2] = bump10[i, j]
    return pattern


def _encoder_fills() -> dict[str, Fill]:
    fills: dict[str, Fill] = {}

    def block1(w, b):  # hinges of each mel value, centre tap only
        w[: len(EXP_KNOTS), 0, 1, 1] = 1.0
        b[: len(EXP_KNOTS)] = -EXP_KNOTS

    def block4(w, b):  # stride (3,1): 3 bins x 1 frame, the exp slopes; each bin is read exactly once
        w[0, : len(EXP_KNOTS), :, 1] = (exp_slopes() / LOUDNESS_REFERENCE)[:, None]

    def block7(w, b):  # stride (3,3): 3x3 boxes; frames 5..7 make output column 2
        w[0, 0] = 1.0

    def block10(w, b):  # stride (3,2): 3 rows x centre column, so column 1 = block7 column 2 only
        w[0, 0, :, 1] = 1.0

    def block12(w, b):  # 3x3 valid: sum the 3 rows of the centre column -> L, plus hinges for the soft cap
        for c, knee in enumerate([0.0] + [k for k, _ in SOFT_CAP]):
            w[c, 0, :, 1] = 1.0
            b[c] = -knee

    def block13(w, b):  # feature f = P(f) * softcap(L), for both halves of the 512 features
        pattern = mouth_pattern().reshape(-1)
        gains = [1.0] + [-drop for _, drop in SOFT_CAP]
        for half in (0, 256):
            for c, gain in enumerate(gains):
                w[half : half + 256, c, 0, 0] = pattern * gain

    for i, fill in ((1, block1), (4, block4), (7, block7), (10, block10), (12, block12), (13, block13)):
        fills[f"enc.block{i}"] = fill
    return fills


# ------------------------------------------------------------------------------------------------ UNet


def _set(index, value: float) -> Fill:
    """A fill that sets one weight element."""

    def fill(w, b):
        w[index] = value

    return fill


def _route(fills: dict[str, Fill], block: str, src: int, dst: int, kernel=(_KEEP, _KEEP)) -> None:
    """Carry channel `src` of an inverted-residual block's input to channel `dst` of its output.

    Hidden channel 0 does it: expand picks `src`, the depthwise conv applies `kernel` (outer product of the
    row and column kernels; values stay >= 0, so both ReLUs are identities), project writes `dst`.
    """
    fills[f"{block}.expand"] = _set((0, src, 0, 0), 1.0)
    fills[f"{block}.depthwise"] = _set((0, 0), np.outer(*kernel))
    fills[f"{block}.project"] = _set((dst, 0, 0, 0), 1.0)


def _unet_fills(cast=(0.0, 0.0, 0.0)) -> dict[str, Fill]:
    fills: dict[str, Fill] = {}
    ch = UNET_CHANNELS

    # inc: x1 channels 0-2 = input channels 0-2 (the unmasked face).
    fills["unet.inc.expand"] = _set(([0, 1, 2], [0, 1, 2], 0, 0), 1.0)
    fills["unet.inc.depthwise"] = _set((slice(0, 3), 0, 1, 1), 1.0)
    fills["unet.inc.project"] = _set(([0, 1, 2], [0, 1, 2], 0, 0), 1.0)

    # Audio branch: time-weighted loudness map, both feature halves, into channel 0; conv5 samples it.
    def audio_expand(w, b):
        for t, weight in TIME_WEIGHTS.items():
            w[0, 2 * t : 2 * t + 2, 0, 0] = weight / 2

    fills["unet.audio.conv1.expand"] = audio_expand
    fills["unet.audio.conv1.depthwise"] = _set((0, 0, 1, 1), 1.0)
    fills["unet.audio.conv1.project"] = _set((0, 0, 0, 0), 1.0)
    _route(fills, "unet.audio.conv2", 0, 0)
    fills["unet.audio.conv3"] = _set((0, 0, 1, 1), 1.0)
    fills["unet.audio.conv5"] = _set((0, 0, 1, 1), 1.0)

    # Decoder: channel 0 carries the mouth map; the fuse input is cat([x6, audio]), so it starts at ch[4].
    _route(fills, "unet.fuse1.conv1", ch[4], 0, DECODER_KERNELS["fuse1"])
    _route(fills, "unet.fuse2.conv1", 0, 0, DECODER_KERNELS["fuse2"])
    for stage in ("up1", "up2", "up3", "up4"):
        _route(fills, f"unet.{stage}.conv1", 0, 0, DECODER_KERNELS[stage])
    fills.update(_up5_fills(cast))
    fills["unet.outc"] = _set(([0, 1, 2], [0, 1, 2], 0, 0), 1.0)
    return fills


def _up5_fills(cast=(0.0, 0.0, 0.0)) -> dict[str, Fill]:
    """up5.conv1: per-colour hinge channels -> piecewise-linear logit, plus the mouth gate (see module doc)."""
    knots, signs, slopes, intercept = logit_fit()
    per_colour = len(knots)
    gate = 3 * per_colour  # the two gate channels follow the colour hinges
    face = UNET_CHANNELS[0]  # up5's input is cat([upsampled decoder, x1]): x1 starts at channel 32

    def expand(w, b):
        for c in range(3):
            rows = slice(c * per_colour, (c + 1) * per_colour)
            w[rows, face + c, 0, 0] = signs  # ReLU(sign * (v - t))
            b[rows] = -signs * knots
        w[gate : gate + 2, 0, 0, 0] = 1.0
        b[gate : gate + 2] = [-MOUTH_THRESHOLD, -MOUTH_THRESHOLD - MOUTH_RAMP]

    def depthwise(w, b):
        w[: gate + 2, 0, 1, 1] = 1.0

    def project(w, b):
        for c in range(3):
            w[c, c * per_colour : (c + 1) * per_colour, 0, 0] = slopes
            w[c, gate : gate + 2, 0, 0] = np.array([-1.0, 1.0]) * MOUTH_LOGIT_SHIFT[c] / MOUTH_RAMP
        b[:3] = intercept + np.asarray(cast)

    return {"unet.up5.conv1.expand": expand, "unet.up5.conv1.depthwise": depthwise, "unet.up5.conv1.project": project}


def logit_fit(hinges: int = LOGIT_HINGES) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Piecewise-linear logit: z(v) = intercept + sum_k slope_k * ReLU(sign_k * (v - knot_k)).

    The first term is v itself (knot 0, sign +1). The other knots lie halfway between uint8 levels, denser
    where logit curves most (near 0 and 1); below 0.5 they open downwards (ReLU(t - v)), above upwards, so
    every term is small near mid-grey and the float32 sum stays accurate. Fitted at v = p/255 to the logit of
    (p + 0.5)/255, weighted by how narrow the logit interval is that truncates back to p; level 255 needs
    sigmoid = 1 in float32, hence a target logit of 18 and a last knot at 254.5/255.
    """
    levels = np.arange(256)
    v = levels / 255.0
    knots = np.append(_logit_knots(hinges - 1), 254.5 / 255)
    signs = np.where(knots < 0.5, -1.0, 1.0)
    knots = np.concatenate([[0.0], knots])
    signs = np.concatenate([[1.0], signs])
    design = np.column_stack([np.ones_like(v)] + [np.maximum(s * (v - t), 0.0) for t, s in zip(knots, signs)])

    clipped = np.clip((levels + 0.5) / 255, 0, 1 - 1e-12)
    target = np.log(clipped / (1 - clipped))
    target[255] = 18.0
    edges = np.clip(np.arange(256) / 255, 1e-12, 1 - 1e-12)
    interval = np.diff(np.log(edges / (1 - edges)))  # logit width of [p/255, (p+1)/255), p = 0..254
    weight = 1.0 / np.minimum(np.append(interval, 1.0), 1.0)
    weight[0] = 0.05  # level 0 only needs a logit below logit(1/255)
    coef = np.linalg.lstsq(design * weight[:, None], target * weight, rcond=None)[0]
    return knots, signs, coef[1:], float(coef[0])


def _logit_knots(count: int) -> np.ndarray:
    """`count` knots at half-levels, spaced by the curvature of logit relative to its truncation tolerance."""
    grid = np.linspace(0, 1, 20001)[1:-1]
    density = np.sqrt(np.abs(2 * grid - 1) / (grid * (1 - grid))) + 0.3
    cumulative = np.cumsum(density) / density.sum()
    positions = np.interp(np.linspace(0, 1, count + 2)[1:-1], cumulative, grid)
    levels = np.unique(np.clip(np.round(positions * 255 - 0.5), 0, 253))
    return (levels + 0.5) / 255


def decoded_bump_profiles(normalise: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The bump's row and column profiles at 320x320 (its map is their outer product), computed in 1D.

    Mirrors the decoder: fuse kernels at 10x10, then for up1..up4 a bilinear x2 (align_corners) and the
    stage's kernel (zero padding), then up5's upsampling. Everything is separable, so 1D is exact.
    """
    profiles = []
    for axis, bump in ((0, BUMP_ROWS), (1, BUMP_COLS)):
        f = bump.copy()
        for stage in ("fuse1", "fuse2", "up1", "up2", "up3", "up4"):
            if stage.startswith("up"):
                f = _upsample_1d(f)
            f = np.correlate(np.pad(f, 1), DECODER_KERNELS[stage][axis], "valid")
        f = _upsample_1d(f)
        profiles.append(f / f.max() if normalise else f)
    return profiles[0], profiles[1]


def _upsample_1d(f: np.ndarray) -> np.ndarray:
    """Linear x2 resize with align_corners, as the UNet's Resize does per axis."""
    n = len(f)
    return np.interp(np.arange(2 * n) * (n - 1) / (2 * n - 1), np.arange(n), f)
