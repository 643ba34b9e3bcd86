"""Point-to-point messages between neighbouring pipeline stages.

Activations travel forward (stage s -> s + 1) and their gradients travel backward (s + 1 -> s)
as mpi4py upper-case messages on contiguous float32 numpy buffers: never pickled. The vocabulary
is Megatron-LM's: ``send_forward``, ``recv_forward``, ``send_backward``, ``recv_backward``.

Deadlock freedom: every send is an ``Isend`` (it never blocks), every receive a blocking ``Recv``.
A schedule whose dependencies form no cycle therefore always makes progress; the requests of
sends in flight are kept, with their buffers, until :meth:`PipeLink.wait_sends`.

Tags carry the micro-batch index and the direction (``tag = 2 * micro + direction``) so that a
message can never be taken for another micro-batch's or for one going the other way.
"""
from __future__ import annotations

import numpy as np
from mpi4py import MPI

from mpirl.comm.world import World

FORWARD, BACKWARD = 0, 1
CONTROL_TAG = 32000  # below the smallest MPI_TAG_UB the standard allows (32767)
DIRECTION_NAMES = {FORWARD: "activation", BACKWARD: "gradient"}


class ShapeMismatch(RuntimeError):
    """A message between stages does not have the size the receiving stage expects."""


def message_tag(micro: int, direction: int) -> int:
    """The MPI tag of micro-batch ``micro`` travelling in ``direction`` (FORWARD or BACKWARD)."""
    if not 0 <= micro < CONTROL_TAG // 2:
        raise ValueError(f"micro-batch index {micro} out of range for a message tag")
    return 2 * micro + direction


def _check_buffer(buf: np.ndarray, what: str) -> None:
    if not isinstance(buf, np.ndarray) or buf.dtype != np.float32 or not buf.flags.c_contiguous:
        kind = f"{buf.dtype} {'contiguous' if buf.flags.c_contiguous else 'strided'}" \
            if isinstance(buf, np.ndarray) else type(buf).__name__
        raise TypeError(f"{what} needs a C-contiguous float32 numpy buffer, not {kind}")


class PipeLink:
    """This rank's links to the previous and the next stage of its pipeline.

    ``pipe`` is the pipeline communicator (``Grid.pipe``): rank s there is stage s. The first
    stage has no previous link and the last no next one; using a missing link is a bug and raises.
    """

    def __init__(self, pipe: World):
        self.pipe = pipe
        self.stage, self.stages = pipe.rank, pipe.size
        self.prev = self.stage - 1 if self.stage > 0 else None
        self.next = self.stage + 1 if self.stage < self.stages - 1 else None
        self._pending: list[tuple[MPI.Request, np.ndarray]] = []
        self.bytes_sent = 0  # since the last reset: what this rank put on the wire

    # -- the four verbs ----------------------------------------------------------------------
    def send_forward(self, activations: np.ndarray, micro: int) -> None:
        """Start sending this stage's output activations of ``micro`` to the next stage."""
        self._isend(activations, self._peer(self.next, "send_forward"), micro, FORWARD)

    def recv_forward(self, out: np.ndarray, micro: int) -> np.ndarray:
        """Receive the previous stage's activations of ``micro`` into ``out`` (shape checked)."""
        return self._recv(out, self._peer(self.prev, "recv_forward"), micro, FORWARD)

    def send_backward(self, grad_inputs: np.ndarray, micro: int) -> None:
        """Start sending the gradient w.r.t. this stage's inputs of ``micro`` to the previous stage."""
        self._isend(grad_inputs, self._peer(self.prev, "send_backward"), micro, BACKWARD)

    def recv_backward(self, out: np.ndarray, micro: int) -> np.ndarray:
        """Receive the gradient w.r.t. this stage's outputs of ``micro`` into ``out``."""
        return self._recv(out, self._peer(self.next, "recv_backward"), micro, BACKWARD)

    # -- small control messages (pickled): shapes agreed once when a pipeline is built --------
    def send_obj_forward(self, obj) -> None:
        self.pipe.comm.send(obj, dest=self._peer(self.next, "send_obj_forward"), tag=CONTROL_TAG)

    def recv_obj_forward(self):
        return self.pipe.comm.recv(source=self._peer(self.prev, "recv_obj_forward"), tag=CONTROL_TAG)

    def wait_sends(self) -> None:
        """Block until every send started here has completed; its buffers may then be reused."""
        if self._pending:
            MPI.Request.Waitall([req for req, _ in self._pending])
            self._pending.clear()

    def progress(self) -> None:
        """Let MPI advance sends in flight (and drop the finished ones) without blocking.

        Large messages move in pieces that need the sender to enter MPI now and then; calling
        this between computations keeps a neighbour from waiting on a send that sits still.
        """
        if self._pending:
            self._pending = [(req, buf) for req, buf in self._pending if not req.Test()]

    # -- internals -----------------------------------------------------------------------------
    def _peer(self, peer: int | None, verb: str) -> int:
        if peer is None:
            raise RuntimeError(f"stage {self.stage} of {self.stages} has no neighbour for {verb}")
        return peer

    def _isend(self, buf: np.ndarray, dest: int, micro: int, direction: int) -> None:
        _check_buffer(buf, f"{DIRECTION_NAMES[direction]} send")
        req = self.pipe.comm.Isend(buf, dest=dest, tag=message_tag(micro, direction))
        self._pending.append((req, buf))  # the buffer must outlive the send
        self.bytes_sent += buf.nbytes

    def _recv(self, out: np.ndarray, source: int, micro: int, direction: int) -> np.ndarray:
        _check_buffer(out, f"{DIRECTION_NAMES[direction]} receive")
        tag = message_tag(micro, direction)
        status = MPI.Status()
        self.pipe.comm.Probe(source=source, tag=tag, status=status)
        count = status.Get_count(MPI.FLOAT)
        if count != out.size:
            raise ShapeMismatch(
                f"stage {self.stage} expected the {DIRECTION_NAMES[direction]} of micro-batch "
                f"{micro} from stage {source} with shape {tuple(out.shape)} ({out.size} floats) "
                f"but {count} floats arrived: do the stages agree on the layer widths and the "
                "micro-batch size?")
        self.pipe.comm.Recv(out, source=source, tag=tag)
        return out
