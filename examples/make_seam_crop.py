"""Before/after close-ups of the seam around the model region, from frames rendered with different --blend values.

    python examples/make_seam_crop.py out/hard/000020.png out/feather/000020.png examples/feather_seam.png \
        --labels "--blend hard" "--blend feather" --box 537 269 759 491

Crops the same box from each image, enlarges it 2x without smoothing (so the seam's pixels stay visible) and puts
the crops side by side, each labelled.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", help="frame images, then the output PNG")
    parser.add_argument("--labels", nargs="+", required=True)
    parser.add_argument("--box", type=int, nargs=4, required=True, help="x1 y1 x2 y2 of the close-up")
    args = parser.parse_args()
    *inputs, output = args.images
    if len(args.labels) != len(inputs):
        parser.error("give one label per input image")
    x1, y1, x2, y2 = args.box
    tiles = []
    for path, label in zip(inputs, args.labels):
        frame = cv2.imread(path)
        if frame is None:
            parser.error(f"cannot read {path}")
        tile = cv2.resize(frame[y1:y2, x1:x2], None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
        caption = np.full((32, tile.shape[1], 3), 255, np.uint8)
        cv2.putText(caption, label, (8, 23), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(np.vstack([tile, caption]))
    cv2.imwrite(output, np.hstack(tiles))
    print(f"wrote {output} ({len(tiles)} crops)")


if __name__ == "__main__":
    main()
