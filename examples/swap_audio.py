"""A rendered MP4 with its audio track replaced by another file's: the video stream is copied as it is, the new
audio encoded to AAC at 16 kHz mono. A deliberately out-of-sync output, to see `lipsync review` flag one.

    python examples/swap_audio.py out/hello.mp4 examples/pauses.wav out/hello_swapped.mp4
"""

from __future__ import annotations

import argparse
from fractions import Fraction

import av
import numpy as np

from lipsync_render.media.audio import SAMPLE_RATE, load_audio


def swap_audio(video: str, audio: str, output: str) -> None:
    samples = load_audio(audio)
    with av.open(video) as source, av.open(output, "w") as target:
        video_in = source.streams.video[0]
        video_out = target.add_stream_from_template(video_in)
        sound = target.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        sound.time_base = Fraction(1, SAMPLE_RATE)
        for packet in source.demux(video_in):
            if packet.dts is None:
                continue
            packet.stream = video_out
            target.mux(packet)
        pcm = np.clip(samples * 32767, -32768, 32767).astype(np.int16)
        for start in range(0, len(pcm), 1024):
            frame = av.AudioFrame.from_ndarray(pcm[None, start : start + 1024], format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = SAMPLE_RATE, start, Fraction(1, SAMPLE_RATE)
            target.mux(sound.encode(frame))
        target.mux(sound.encode(None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", help="a rendered MP4")
    parser.add_argument("audio", help="the audio file to put in its place")
    parser.add_argument("output", help="the MP4 to write")
    args = parser.parse_args()
    swap_audio(args.video, args.audio, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
