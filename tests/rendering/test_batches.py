"""UNet batch planning: full batches of rendered frames, idle frames riding along, bounded runs."""

import itertools

import numpy as np
import pytest

from lipsync_render.rendering.batches import MAX_SPAN, plan_batches


@pytest.mark.parametrize("frames, size, first", [(33, 4, 4), (33, 4, 1), (100, 25, 25), (1, 8, 1), (7, 1, 1)])
def test_without_idle_frames_runs_are_the_plain_batches(frames, size, first):
    batches = list(plan_batches(frames, itertools.repeat(0.0), size, first))
    bounds = [0, *range(first, frames, size), frames]
    assert [b.numbers.tolist() for b in batches] == [list(range(a, b)) for a, b in itertools.pairwise(bounds)]
    assert all(np.array_equal(b.rendered, b.numbers) for b in batches)


def test_idle_frames_take_no_unet_slot():
    weights = [0, 1, 1, 0.5, 0, 1, 0, 0, 1, 1]
    batches = list(plan_batches(10, iter(weights), size=2, first=1))
    assert [b.numbers.tolist() for b in batches] == [[0], [1, 2, 3, 4], [5, 6, 7], [8, 9]]
    assert [b.rendered.tolist() for b in batches] == [[0], [3, 4], [6, 7], []]
    assert np.concatenate([b.still_weights for b in batches]).tolist() == weights


def test_long_silences_come_in_bounded_runs():
    weights = [0.0] * 3 + [1.0] * 200 + [0.0] * 3
    batches = list(plan_batches(len(weights), iter(weights), size=4, first=4))
    assert max(len(b.numbers) for b in batches) == MAX_SPAN
    assert np.concatenate([b.numbers for b in batches]).tolist() == list(range(len(weights)))
    assert sum(len(b.rendered) for b in batches) == 6
    assert list(plan_batches(0, iter([]), 4, 4)) == []


def test_the_weights_are_read_only_as_far_as_the_frames():
    source = iter([0.0] * 10)
    assert sum(len(b.numbers) for b in plan_batches(6, source, 4, 4)) == 6
    assert len(list(source)) == 4
