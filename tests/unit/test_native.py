"""mpirl's C kernels: built and loaded once, refused loudly, and equal to their numpy twins."""
import contextlib
import ctypes
import dataclasses

import numpy as np
import pytest

from mpirl import native
from mpirl.mdp import RandomMDP, load_gym
from mpirl.mdp import backup as backup_module
from mpirl.replay import sumtree as sumtree_module


def _twins(make, monkeypatch):
    """(object built with the C kernels, the same built with numpy)."""
    assert native.kernels() is not None
    with_c = make()
    with monkeypatch.context() as patch:
        for module in (sumtree_module, backup_module):
            patch.setattr(module, "kernels", lambda: None)
        with_numpy = make()
    assert with_c._native is not None and with_numpy._native is None
    return with_c, with_numpy


def test_the_library_is_built_once_and_named_by_its_source(tmp_path, monkeypatch):
    monkeypatch.setenv("MPIRL_CACHE_DIR", str(tmp_path))
    path = native.build()
    assert path.parent == tmp_path and path.exists()
    mtime = path.stat().st_mtime_ns
    assert native.build() == path and path.stat().st_mtime_ns == mtime   # not rebuilt
    lib = ctypes.CDLL(str(path))
    assert all(hasattr(lib, name) for name in native.SIGNATURES)


def test_a_failing_compiler_is_reported_with_its_message(tmp_path, monkeypatch):
    monkeypatch.setenv("MPIRL_CACHE_DIR", str(tmp_path))
    fake = tmp_path / "cc"
    fake.write_text("#!/bin/sh\necho 'kernels.c:1: error: no such compiler here' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CC", str(fake))
    with pytest.raises(RuntimeError, match="no such compiler here"):
        native.build()
    assert not list(tmp_path.glob("*.so"))   # nothing half-built left behind


def test_disabled_kernels_fall_back_to_numpy(monkeypatch):
    native.kernels.cache_clear()
    monkeypatch.setenv("MPIRL_NATIVE", "0")
    try:
        assert native.kernels() is None
        assert sumtree_module.SumTree(10)._native is None
    finally:
        native.kernels.cache_clear()


def test_sumtree_kernels_draw_and_update_exactly_as_numpy(monkeypatch):
    rng = np.random.default_rng(0)
    c_tree, np_tree = _twins(lambda: sumtree_module.SumTree(300_000), monkeypatch)
    for _ in range(20):
        idx = rng.integers(0, 300_000, size=500)          # repeats: the last write wins
        values = rng.exponential(size=500)
        c_tree.update(idx, values)
        np_tree.update(idx, values)
    np.testing.assert_array_equal(c_tree.leaves, np_tree.leaves)
    np.testing.assert_allclose(c_tree.tree, np_tree.tree, rtol=1e-12, atol=1e-9)
    prefix = rng.random(4096) * np_tree.total
    np.testing.assert_array_equal(c_tree.find(prefix), np_tree.find(prefix))
    fractions = np.sort(rng.random(256))
    (c_leaves, c_probs), (np_leaves, np_probs) = (t.find_fractions(fractions.copy())
                                                  for t in (c_tree, np_tree))
    np.testing.assert_array_equal(c_leaves, np_leaves)
    np.testing.assert_allclose(c_probs, np_probs, rtol=1e-12)
    with pytest.raises(IndexError):
        c_tree.update([0, 300_000], [1.0, 1.0])
    with pytest.raises(ValueError):
        c_tree.update([0, 1], [1.0, np.nan])
    np.testing.assert_array_equal(c_tree.leaves, np_tree.leaves)   # a refused batch wrote nothing


BACKUP_SOURCES = {"regular": RandomMDP(5000, 4, 4, seed=3),       # the AVX2 loop, 4 actions
                  "3-actions": RandomMDP(3001, 3, 4, seed=4),     # the AVX2 loop, via a buffer
                  "branching-3": RandomMDP(2000, 4, 3, seed=5),   # scalar, constant row length
                  "irregular": load_gym("FrozenLake-v1")}          # scalar, rows from indptr


@pytest.mark.parametrize("source", BACKUP_SOURCES.values(), ids=BACKUP_SOURCES.keys())
def test_bellman_kernels_back_up_exactly_as_numpy(source, monkeypatch):
    lo, hi = 2, source.n_states - 1
    c_backup, np_backup = _twins(lambda: backup_module.Backup(source.rows(lo, hi)), monkeypatch)
    V = np.random.default_rng(1).normal(size=source.n_states)
    np.testing.assert_allclose(c_backup.q_values(V, 0.95), np_backup.q_values(V, 0.95),
                               rtol=0, atol=1e-12)
    c_out, np_out = np.empty(hi - lo), np.empty(hi - lo)
    c_res, np_res = c_backup.state_values(V, 0.95, c_out), np_backup.state_values(V, 0.95, np_out)
    np.testing.assert_allclose(c_out, np_out, rtol=0, atol=1e-12)
    assert c_res == pytest.approx(np_res, abs=1e-12)
    assert np_res == pytest.approx(np.abs(np_out - V[lo:hi]).max(), abs=0)


@pytest.mark.parametrize("simd", [-1, 0], ids=["cpu-choice", "scalar"])
def test_a_nan_in_v_makes_the_residual_nan_as_in_numpy(simd, monkeypatch):
    source = BACKUP_SOURCES["regular"]
    c_backup, np_backup = _twins(lambda: backup_module.Backup(source.rows(0, 5000)), monkeypatch)
    V = np.random.default_rng(3).normal(size=5000)
    V[7] = np.nan   # state 7's own change is NaN, whatever its rows read
    with _switches(native.kernels(), simd=simd):
        residuals = [b.state_values(V, 0.9, np.empty(5000)) for b in (c_backup, np_backup)]
    assert np.isnan(residuals).all(), residuals


def test_a_backup_into_v_itself_is_refused():
    source = BACKUP_SOURCES["regular"]
    backup = backup_module.Backup(source.rows(0, 5000))
    V = np.zeros(5000)
    with pytest.raises(ValueError, match="overlaps V"):
        backup.state_values(V, 0.9, V[:])


@pytest.mark.parametrize("V_len,out_len", [(4999, 5000), (5000, 4999), (5001, 5000)])
def test_a_backup_with_vectors_of_the_wrong_length_is_refused(V_len, out_len):
    backup = backup_module.Backup(BACKUP_SOURCES["regular"].rows(0, 5000))
    with pytest.raises(ValueError, match="must have shape"):
        backup.state_values(np.zeros(V_len), 0.9, np.empty(out_len))
    with pytest.raises(ValueError, match="must have shape"):   # Q: one entry per row
        backup.q_values(np.zeros(V_len), 0.9, np.empty(backup.n_rows + out_len - 5000))


def test_state_ids_given_as_int64_reach_the_kernels_as_int32():
    rows = BACKUP_SOURCES["regular"].rows(0, 5000)
    wide = dataclasses.replace(rows, next_state=rows.next_state.astype(np.int64))
    narrow, widened = backup_module.Backup(rows), backup_module.Backup(wide)
    assert widened.next_state.dtype == np.int32 and widened._native is not None
    V = np.random.default_rng(4).normal(size=5000)
    np.testing.assert_array_equal(widened.q_values(V, 0.9), narrow.q_values(V, 0.9))


def _cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            return fh.read()
    except OSError:
        return ""


def _cpu_has_avx2() -> bool:
    return " avx2" in _cpuinfo()


def _cpu_vendor_is_amd() -> bool:
    return "AuthenticAMD" in _cpuinfo()


@contextlib.contextmanager
def _switches(lib, **values):
    """The kernels' switches set to ``values`` (name without the ``mpirl_`` prefix) for the
    block, then put back; yields them by name, None where this build has no such switch (not
    x86-64, or not GCC or clang), which is then left alone."""
    switches = {name: native.switch(lib, f"mpirl_{name}") for name in values}
    before = {name: sw.value for name, sw in switches.items() if sw is not None}
    try:
        for name, value in values.items():
            if switches[name] is not None:
                switches[name].value = value
        yield switches
    finally:
        for name, value in before.items():
            switches[name].value = value


@pytest.mark.parametrize("source", [BACKUP_SOURCES["regular"], BACKUP_SOURCES["3-actions"]],
                         ids=["4-actions", "3-actions"])
def test_the_avx2_backup_gives_the_scalar_loops_bits_with_either_prefetch(source):
    lib = native.kernels()
    if native.switch(lib, "mpirl_simd") is None:
        pytest.skip("this build has no AVX2 loop (not x86-64 with GCC or clang)")
    lo, hi = 3, source.n_states - 2   # row groups of four start at odd places
    backup = backup_module.Backup(source.rows(lo, hi))
    V = np.random.default_rng(2).normal(size=source.n_states)
    results = []
    # the CPU's choices, then each prefetch hint by name, then scalar only
    for simd, hint in ((-1, -1), (-1, 0), (-1, 1), (0, -1)):
        with _switches(lib, simd=simd, stream_hint=hint) as switches:
            out = np.empty(hi - lo)
            results.append((backup.q_values(V, 0.9), backup.state_values(V, 0.9, out), out))
            if simd == -1:
                assert switches["simd"].value == int(_cpu_has_avx2())   # decided on first use
                if hint == -1 and source.n_actions == 4 and _cpu_has_avx2():
                    assert switches["stream_hint"].value == int(_cpu_vendor_is_amd())
    q_scalar, res_scalar, out_scalar = results[-1]
    for q, res, out in results[:-1]:
        np.testing.assert_array_equal(q, q_scalar)
        np.testing.assert_array_equal(out, out_scalar)
        assert res == res_scalar


def test_an_unknown_switch_is_refused_by_name():
    with pytest.raises(KeyError, match="mpirl_simd"):
        native.switch(native.kernels(), "mpirl_simd_typo")


def test_the_benchmark_floors_read_what_they_say():
    lib = native.kernels()
    rng = np.random.default_rng(5)
    words = rng.integers(0, 2**63, size=100_003, dtype=np.uint64)   # an odd tail
    expected = int(words.sum(dtype=np.uint64))   # wraps modulo 2**64, as C's sum does
    assert lib.read_in_order(words.ctypes.data, len(words)) == expected
    V = rng.normal(size=5000)
    next_state = rng.integers(0, 5000, size=40_001).astype(np.int32)
    total = lib.read_at(V.ctypes.data, next_state.ctypes.data, len(next_state))
    assert total == pytest.approx(V[next_state].sum(), rel=1e-12, abs=1e-9)


@pytest.mark.parametrize("rank, warned", [("0", True), ("3", False)])
def test_without_a_compiler_numpy_is_used_and_only_rank_0_says_so(tmp_path, monkeypatch, rank,
                                                                   warned, recwarn):
    monkeypatch.setenv("MPIRL_CACHE_DIR", str(tmp_path))   # nothing built there yet
    monkeypatch.setenv("CC", "/nonexistent/cc")
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", rank)
    native.kernels.cache_clear()
    try:
        assert native.kernels() is None
        assert sumtree_module.SumTree(10)._native is None
    finally:
        native.kernels.cache_clear()
    messages = [str(w.message) for w in recwarn if "C kernels unavailable" in str(w.message)]
    assert len(messages) == (1 if warned else 0)
