"""A rate limiter in Reverb's sense (``SampleToInsertRatio``), for a synchronous training loop.

Learning speed in an off-policy run is set by how many transitions are replayed per transition
inserted. Left to itself that ratio changes with the number of ranks (more ranks insert more per
loop iteration); the limiter pins it:

- no sampling before ``min_size`` inserts;
- after that, ``sampled`` must stay within ``error_buffer`` of ``samples_per_insert * (inserted -
  min_size)``: sampling is refused above the band and inserting is refused below it.

As in Acme, the band's half-width is ``min_size * samples_per_insert * tolerance`` (tolerance
being the allowed relative deviation), widened to at least one sample batch and one insert chunk
so that a loop which inserts and samples in chunks can never be refused both (no deadlock).

Counts are global (all ranks together) and every rank keeps an identical limiter, so every rank
takes the same decisions without communicating.
"""
from __future__ import annotations


class RateLimiter:
    def __init__(self, samples_per_insert: float, min_size: int, tolerance: float,
                 sample_chunk: int = 1, insert_chunk: int = 1):
        if samples_per_insert <= 0 or min_size < 1 or tolerance < 0:
            raise ValueError("rate limiter needs samples_per_insert > 0, min_size >= 1, "
                             "tolerance >= 0")
        self.samples_per_insert = float(samples_per_insert)
        self.min_size = int(min_size)
        self.error_buffer = max(min_size * samples_per_insert * tolerance,
                                float(sample_chunk), samples_per_insert * insert_chunk)
        self.inserted = 0
        self.sampled = 0

    def target(self, inserted: int | None = None) -> float:
        """Samples owed after ``inserted`` inserts (default: so far)."""
        inserted = self.inserted if inserted is None else inserted
        return self.samples_per_insert * max(inserted - self.min_size, 0)

    def can_sample(self, count: int) -> bool:
        """May ``count`` more transitions be sampled without running ahead of the band?"""
        return (self.inserted >= self.min_size
                and self.sampled + count <= self.target() + self.error_buffer)

    def can_insert(self, count: int) -> bool:
        """May ``count`` more transitions be inserted without sampling falling below the band?"""
        return (self.inserted + count <= self.min_size
                or self.sampled >= self.target(self.inserted + count) - self.error_buffer)

    def insert(self, count: int) -> None:
        self.inserted += count

    def sample(self, count: int) -> None:
        self.sampled += count

    @property
    def ratio(self) -> float:
        """Samples per insert since sampling was allowed (nan before)."""
        after = self.inserted - self.min_size
        return self.sampled / after if after > 0 else float("nan")

    def state_dict(self) -> dict:
        return {"inserted": self.inserted, "sampled": self.sampled}

    def load_state_dict(self, state: dict) -> None:
        self.inserted, self.sampled = int(state["inserted"]), int(state["sampled"])
