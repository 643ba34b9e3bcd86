"""The rate limiter keeps samples within its band around samples_per_insert * inserts."""
import numpy as np
import pytest

from mpirl.replay.limiter import RateLimiter


@pytest.mark.parametrize("spi,insert_chunk,sample_chunk", [(8.0, 16, 128), (0.5, 4, 32),
                                                           (2.0, 64, 64)])
def test_greedy_loop_holds_the_ratio_and_never_deadlocks(spi, insert_chunk, sample_chunk):
    limiter = RateLimiter(spi, min_size=500, tolerance=0.1, sample_chunk=sample_chunk,
                          insert_chunk=insert_chunk)
    rng = np.random.default_rng(0)
    for _ in range(3000):
        moved = False
        if limiter.can_insert(insert_chunk) and rng.random() < 0.5:
            limiter.insert(insert_chunk)
            moved = True
        elif limiter.can_sample(sample_chunk):
            limiter.sample(sample_chunk)
            moved = True
        elif limiter.can_insert(insert_chunk):
            limiter.insert(insert_chunk)
            moved = True
        assert moved, "neither inserting nor sampling was allowed"
        if limiter.inserted < limiter.min_size:
            assert limiter.sampled == 0
        assert abs(limiter.sampled - limiter.target()) <= limiter.error_buffer + 1e-9
    assert limiter.ratio == pytest.approx(spi, rel=0.05)


def test_no_sampling_before_min_size_and_the_band_blocks_both_ways():
    limiter = RateLimiter(4.0, min_size=100, tolerance=0.5, sample_chunk=10, insert_chunk=10)
    assert limiter.error_buffer == 200.0
    limiter.insert(90)
    assert not limiter.can_sample(1)
    limiter.insert(10)
    assert limiter.can_sample(200) and not limiter.can_sample(201)
    limiter.insert(100)                         # target 400 - buffer 200: one more insert needs
    assert not limiter.can_insert(1)            # 4 * 101 - 200 = 204 samples first
    limiter.sample(203)
    assert not limiter.can_insert(1)
    limiter.sample(1)
    assert limiter.can_insert(1) and limiter.ratio == pytest.approx(2.04)
    limiter.load_state_dict({"inserted": 5, "sampled": 0})
    assert limiter.state_dict() == {"inserted": 5, "sampled": 0}
