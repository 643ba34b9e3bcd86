"""The two streams of an actor-learner job (IMPALA): trajectory blocks actor -> learner, and
parameters learner -> actor. Neither side waits for the other unless it must.

Both streams carry fixed-layout messages: a :class:`Layout` packs named numpy fields into one
contiguous byte buffer, allocated once, sent as MPI.BYTE with upper-case calls. Nothing is pickled.

Blocks: a bounded queue with back-pressure, nothing dropped.
    The learner keeps ``queue_depth`` receives posted per actor; an actor sends each block with
    ``Issend``, which completes only once a posted receive has taken it, and has at most
    ``in_flight`` blocks outstanding. So at most ``queue_depth`` blocks wait at the learner per
    actor and ``in_flight`` more at the actor; an actor ahead of its learner waits for a slot
    (and takes parameters and the stop message while it waits). MPI matches one sender's
    messages in the order its receives were posted, and the learner consumes each actor's
    receives in that order, so each actor's blocks arrive in the order they were sent.

Parameters: the newest, never half-written.
    Each actor has its own send buffer at the learner. :meth:`LearnerLink.send_params` fills it
    and starts an ``Isend`` only when the previous send to that actor is complete, so a buffer
    is never rewritten while MPI still reads it, and an actor slow to take parameters gets the
    newest version rather than a backlog. The actor receives into a buffer of its own and copies
    into its model only once the receive has completed. Chosen over a one-sided window (which
    would need a lock per read, and a learner that enters MPI often for passive-target progress)
    and over a broadcast (collective: every actor would stop for it): see docs/impala.md.

Stopping: the learner sends the stop message (version -1) on the parameter stream, then
receives and discards blocks until every actor reports, with the count it sent, that its last
send has completed; only then are the remaining posted receives cancelled. No send is left
unmatched and no rank waits forever.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np
from mpi4py import MPI

from mpirl.comm.world import World

BLOCK_TAG, PARAMS_TAG, DONE_TAG = 31001, 31002, 31003
STOP = -1   # the version of the stop message


class Layout:
    """Named fields of fixed dtype and shape, packed (8-byte aligned) in one byte buffer."""

    def __init__(self, fields: dict[str, tuple[np.dtype, tuple]]):
        self.fields, self.offsets, offset = {}, {}, 0
        for name, (dtype, shape) in fields.items():
            dtype = np.dtype(dtype)
            self.fields[name] = (dtype, tuple(shape))
            self.offsets[name] = offset
            offset += -(-int(np.prod(shape, dtype=np.int64)) * dtype.itemsize // 8) * 8
        self.nbytes = offset

    def allocate(self) -> "Message":
        return Message(self, np.zeros(self.nbytes, np.uint8))


class Message:
    """One buffer of a :class:`Layout`: ``msg["obs"]`` is a numpy view of that field."""

    def __init__(self, layout: Layout, buf: np.ndarray):
        self.buf = buf
        self.views = {}
        for name, (dtype, shape) in layout.fields.items():
            start = layout.offsets[name]
            count = int(np.prod(shape, dtype=np.int64))
            self.views[name] = buf[start:start + count * dtype.itemsize].view(dtype).reshape(shape)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.views[name]


class ActorLink:
    """An actor's end: blocks to its learner, parameters (and the stop message) from it.

    Parameter messages must have an int64 field ``version``."""

    def __init__(self, world: World, learner: int, blocks: Layout, params: Layout,
                 in_flight: int):
        self.comm, self.learner = world.comm, learner
        self.slots = [blocks.allocate() for _ in range(in_flight)]
        self.sends = [MPI.REQUEST_NULL] * in_flight
        self.turn = 0
        self.blocks_sent = 0
        self.wait_s = 0.0   # time spent waiting for a free slot (back-pressure)
        self.params = params.allocate()
        self._post_params_recv()
        self.stopped = False

    def _post_params_recv(self) -> None:
        self.params_recv = self.comm.Irecv([self.params.buf, MPI.BYTE], source=self.learner,
                                           tag=PARAMS_TAG)

    def recv_params(self, load: Callable[[Message], None], block: bool = False) -> bool:
        """If parameters have arrived (``block``: wait for them), ``load(message)`` them and
        listen for the next; True if they did. The stop message sets :attr:`stopped`."""
        if self.stopped:
            return False
        if block:
            self.params_recv.Wait()
        elif not self.params_recv.Test():
            return False
        if int(self.params["version"][0]) == STOP:
            self.stopped = True
            return False
        load(self.params)
        self._post_params_recv()
        return True

    def free_slot(self, load: Callable[[Message], None]) -> Message | None:
        """The buffer to fill with the next block, once the learner has taken the block that
        was last in it (back-pressure); parameters that arrive meanwhile are loaded. None when
        the learner has said stop."""
        send = self.sends[self.turn]
        started = time.perf_counter()
        while not self.stopped and send != MPI.REQUEST_NULL and not send.Test():
            if MPI.Request.Waitany([send, self.params_recv]) == 1:
                self.recv_params(load)
        self.wait_s += time.perf_counter() - started
        self.recv_params(load)   # the newest parameters for the block about to be made
        return None if self.stopped else self.slots[self.turn]

    def send_block(self) -> None:
        """Start sending the slot :meth:`free_slot` gave (it must not be touched until that
        slot comes round again)."""
        self.sends[self.turn] = self.comm.Issend([self.slots[self.turn].buf, MPI.BYTE],
                                                 dest=self.learner, tag=BLOCK_TAG)
        self.turn = (self.turn + 1) % len(self.slots)
        self.blocks_sent += 1

    def finish(self) -> None:
        """After the stop message: wait until the learner has taken every block sent (it
        discards them), then tell it how many were sent."""
        while not self.stopped:                 # (the stop message is on its way)
            self.recv_params(lambda _: None, block=True)
        MPI.Request.Waitall(self.sends)
        self.comm.Send([np.array([self.blocks_sent], np.int64), MPI.INT64_T], dest=self.learner,
                       tag=DONE_TAG)


@dataclass
class PostedRecv:
    """A receive a learner keeps posted for an actor's next block."""
    request: MPI.Request
    message: Message
    arrived: bool = False   # completed (by a Testsome that completed others too), not consumed


def _arrived(heads: list[PostedRecv], wait: bool) -> list[int]:
    """The indices of ``heads`` whose blocks have arrived (``wait``: at least one, blocking)."""
    pending = [i for i, head in enumerate(heads) if not head.arrived]
    if pending:
        requests = [heads[i].request for i in pending]
        done = (MPI.Request.Waitsome if wait else MPI.Request.Testsome)(requests) or []
        for j in done:
            heads[pending[j]].arrived = True
    return [i for i, head in enumerate(heads) if head.arrived]


class LearnerLink:
    """A learner's end: blocks from its actors, parameters and the stop message to them."""

    def __init__(self, world: World, actors: list[int], blocks: Layout, params: Layout,
                 queue_depth: int):
        self.comm, self.actors = world.comm, list(actors)
        self.posted: dict[int, deque[PostedRecv]] = {a: deque() for a in self.actors}
        for a in self.actors:
            for _ in range(queue_depth):
                self._post_block_recv(a, blocks.allocate())
        self.params_out = {a: params.allocate() for a in self.actors}
        self.params_sends = {a: MPI.REQUEST_NULL for a in self.actors}
        self.blocks_received = {a: 0 for a in self.actors}
        self.wait_s = 0.0   # time spent waiting for blocks
        self._first = 0     # whose block is looked at first: each actor in turn

    def _post_block_recv(self, actor: int, message: Message) -> None:
        request = self.comm.Irecv([message.buf, MPI.BYTE], source=actor, tag=BLOCK_TAG)
        self.posted[actor].append(PostedRecv(request, message))

    def recv_block(self, consume: Callable[[int, Message], None]) -> int:
        """Wait for the next block of any actor (each actor's in the order sent; the actors
        whose blocks are ready taken in turn), ``consume(actor, message)`` it, and post the
        receive again. Returns the actor."""
        k = self._first % len(self.actors)
        order = self.actors[k:] + self.actors[:k]
        self._first += 1
        heads = [self.posted[a][0] for a in order]
        ready = _arrived(heads, wait=False)
        if not ready:
            started = time.perf_counter()
            ready = _arrived(heads, wait=True)
            self.wait_s += time.perf_counter() - started
        actor = order[ready[0]]   # the first ready in this call's turn order
        message = self.posted[actor].popleft().message
        consume(actor, message)
        self.blocks_received[actor] += 1
        self._post_block_recv(actor, message)
        return actor

    def _take_matched(self, actor: int, sent: int) -> int:
        """After ``actor`` reported ``sent`` blocks: the ones its posted receives hold but were
        not yet taken (MPI's Waitany may report the report before them), received and
        discarded. Returns how many."""
        missing = sent - self.blocks_received[actor]
        if missing > len(self.posted[actor]):
            raise RuntimeError(f"actor {actor} sent {sent} blocks but its learner can hold only "
                               f"{self.blocks_received[actor] + len(self.posted[actor])}")
        for _ in range(missing):
            posted = self.posted[actor].popleft()
            if not posted.arrived:
                posted.request.Wait()
            self.blocks_received[actor] += 1
        return missing

    def send_params(self, fill: Callable[[Message], None]) -> int:
        """Start sending parameters to every actor whose previous ones have arrived
        (``fill(message)`` writes them); returns to how many."""
        sent = 0
        for a in self.actors:
            if self.params_sends[a] == MPI.REQUEST_NULL or self.params_sends[a].Test():
                fill(self.params_out[a])
                self.params_sends[a] = self.comm.Isend([self.params_out[a].buf, MPI.BYTE],
                                                       dest=a, tag=PARAMS_TAG)
                sent += 1
        return sent

    def stop_and_drain(self) -> int:
        """Tell every actor to stop, take (and discard) the blocks still coming until each has
        reported, cancel the receives left posted. Returns the blocks discarded (received but
        not learned from)."""
        for a in self.actors:
            self.params_sends[a].Wait()
            self.params_out[a]["version"][0] = STOP
            self.params_sends[a] = self.comm.Isend([self.params_out[a].buf, MPI.BYTE], dest=a,
                                                   tag=PARAMS_TAG)
        counts = {a: np.zeros(1, np.int64) for a in self.actors}
        done = {a: self.comm.Irecv([counts[a], MPI.INT64_T], source=a, tag=DONE_TAG)
                for a in self.actors}
        discarded, running = 0, list(self.actors)
        while running:
            # a block of a running actor, or an actor's report that it has sent its last
            heads = [self.posted[a][0] for a in running]
            arrived = [i for i, head in enumerate(heads) if head.arrived]
            if not arrived:
                requests = [head.request for head in heads] + [done[a] for a in running]
                index = MPI.Request.Waitany(requests)
                if index >= len(running):   # an actor's last word: all its sends were matched
                    actor = running.pop(index - len(running))
                    discarded += self._take_matched(actor, int(counts[actor][0]))
                    continue
                heads[index].arrived = True
                arrived = [index]
            actor = running[arrived[0]]
            message = self.posted[actor].popleft().message
            discarded += 1
            self.blocks_received[actor] += 1
            self._post_block_recv(actor, message)
        for a in self.actors:
            for posted in self.posted[a]:
                if not posted.arrived:
                    posted.request.Cancel()
                    posted.request.Wait()
            self.posted[a].clear()
            self.params_sends[a].Wait()
            if self.blocks_received[a] != int(counts[a][0]):
                raise RuntimeError(f"actor {a} sent {int(counts[a][0])} blocks but its learner "
                                   f"received {self.blocks_received[a]}")
        return discarded
