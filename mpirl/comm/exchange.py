"""Variable-length exchanges of fixed-dtype rows: Allgatherv and Alltoallv on numpy buffers.

A "row" is ``array[i]``: a scalar, a record of a structured dtype, or a sub-array. Rows travel as
raw bytes in an MPI datatype of one row's size (``MPI.BYTE`` contiguous), so any fixed numpy dtype
works, structured ones included, without pickling, and counts and displacements count rows: in
bytes they would pass MPI's 32-bit limit at 2 GiB (the policy of 268M states). Every rank must
pass the same dtype and row shape.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
from mpi4py import MPI

from mpirl.comm.world import World


def _row_bytes(array: np.ndarray) -> int:
    return array.dtype.itemsize * int(np.prod(array.shape[1:], dtype=np.int64))


def _byte_view(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8)


@contextmanager
def _row_type(array: np.ndarray):
    """One row of ``array`` as a committed MPI datatype, freed on leaving."""
    row = MPI.BYTE.Create_contiguous(_row_bytes(array)).Commit()
    try:
        yield row
    finally:
        row.Free()


def _displacements(counts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)


def allgather_fixed(world: World, row: np.ndarray) -> np.ndarray:
    """Every rank's ``row`` (same shape and dtype everywhere), stacked in rank order:
    shape (size, *row.shape)."""
    row = np.ascontiguousarray(row)
    out = np.empty((world.size,) + row.shape, dtype=row.dtype)
    if world.size == 1:
        out[0] = row
    else:
        world.comm.Allgather(_byte_view(row), out.reshape(-1).view(np.uint8))
    return out


def allgatherv(world: World, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate every rank's ``rows`` in rank order, on every rank.

    Returns (all rows, shape (sum of counts, *row shape); counts per rank, int64 (size,)).
    """
    rows = np.ascontiguousarray(rows)
    if world.size == 1:
        return rows.copy(), np.array([rows.shape[0]], dtype=np.int64)
    counts = allgather_fixed(world, np.array([rows.shape[0]], dtype=np.int64))[:, 0]
    out = np.empty((int(counts.sum()),) + rows.shape[1:], dtype=rows.dtype)
    if out.nbytes:
        with _row_type(rows) as row:
            world.comm.Allgatherv([_byte_view(rows), rows.shape[0], row],
                                  [out.reshape(-1).view(np.uint8), counts, _displacements(counts),
                                   row])
    return out, counts


def alltoallv(world: World, rows: np.ndarray, send_counts: np.ndarray,
              recv_counts: np.ndarray | None = None) -> np.ndarray:
    """Send rows ``[displ[k], displ[k] + send_counts[k])`` of ``rows`` to rank k; receive from
    every rank in rank order.

    ``send_counts``: int (size,), summing to len(rows). ``recv_counts`` (int (size,)) may be given
    when the caller already knows them; otherwise they are exchanged with one Alltoall.
    Returns the received rows, shape (sum of recv_counts, *row shape).
    """
    rows = np.ascontiguousarray(rows)
    send_counts = np.asarray(send_counts, dtype=np.int64)
    if send_counts.sum() != rows.shape[0]:
        raise ValueError(f"send counts sum to {send_counts.sum()}, not the {rows.shape[0]} rows")
    if world.size == 1:
        return rows.copy()
    if recv_counts is None:
        recv_counts = np.empty(world.size, dtype=np.int64)
        world.comm.Alltoall(send_counts, recv_counts)
    recv_counts = np.asarray(recv_counts, dtype=np.int64)
    out = np.empty((int(recv_counts.sum()),) + rows.shape[1:], dtype=rows.dtype)
    if _row_bytes(rows):
        with _row_type(rows) as row:
            world.comm.Alltoallv([_byte_view(rows), send_counts, _displacements(send_counts), row],
                                 [out.reshape(-1).view(np.uint8), recv_counts,
                                  _displacements(recv_counts), row])
    return out

