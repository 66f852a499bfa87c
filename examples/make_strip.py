"""A PNG strip of face close-ups from a rendered video, with each frame's audio loudness underneath.

    python examples/make_strip.py out/hello.mp4 examples/hello.wav examples/hello_strip.png \
        --frames 8 20 33 45 58 70 84 97

Crops the same square around the face in each chosen frame (the avatar moves only a few pixels), so the mouth
opening can be compared at a glance against the RMS of that frame's 40 ms of audio.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import soundfile as sf

from lipsync_render.media.video import read_frames_bgr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video")
    parser.add_argument("audio")
    parser.add_argument("output")
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 20, 33, 45, 58, 70, 84, 97])
    parser.add_argument("--box", type=int, nargs=4, default=[520, 180, 760, 480], help="x1 y1 x2 y2 of the close-up")
    args = parser.parse_args()
    samples, rate = sf.read(args.audio, dtype="float64", always_2d=True)
    samples = samples.mean(axis=1)
    hop = rate // 25
    wanted = set(args.frames)
    x1, y1, x2, y2 = args.box
    tiles = []
    for number, frame in enumerate(read_frames_bgr(args.video)):
        if number in wanted:
            tile = cv2.resize(
                frame[y1:y2, x1:x2], ((x2 - x1) * 3 // 4, (y2 - y1) * 3 // 4), interpolation=cv2.INTER_AREA
            )
            rms = np.sqrt(np.mean(samples[number * hop : (number + 1) * hop] ** 2))
            label = np.full((28, tile.shape[1], 3), 255, np.uint8)
            cv2.putText(
                label, f"#{number} rms {rms:.3f}", (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA
            )
            tiles.append(np.vstack([tile, label]))
    cv2.imwrite(args.output, np.hstack(tiles))
    print(f"wrote {args.output} ({len(tiles)} frames)")


if __name__ == "__main__":
    main()
