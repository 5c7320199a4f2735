"""The compiled kernel (adams/_kernel.c through adams/_fused.py) against the equations of docs/algorithm.md §1.

The reference is written here with torch ops in float64, straight from the equations:

    w  <- (1 - lr wd) w
    nu  = beta2 (m_prev / c_t)^2 + (1 - beta2) g^2       c_t = 1 - beta1^t, or 1 without correction
    m   = beta1 m_prev + (1 - beta1) g
    w  <- w - lr (m / c_t) / (sqrt(nu) + eps)            g = -grad when maximizing

Rounding errors are measured against the *size of the terms* of each expression (the same formula
with every term replaced by its absolute value), the standard bound for a sum of rounded terms: a
coordinate whose update nearly cancels its decayed weight cannot demand more than that.
"""
import functools
import hashlib
import math
import threading

import numpy as np
import pytest
import torch

from adams import _build, _fused


SHAPES = [(), (1,), (0,), (7,), (33, 17), (1023,), (300_000,)]
STEPS = 60
HYPER = {
    "default": dict(lr=1e-2, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, bias_correction=True, maximize=False),
    "paper-text": dict(lr=3e-3, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.0, bias_correction=False, maximize=False),
    "maximize": dict(lr=1e-2, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=1e-2, bias_correction=True, maximize=True),
    "strong-decay": dict(lr=0.1, beta1=0.5, beta2=0.6, eps=1e-3, weight_decay=0.5, bias_correction=True, maximize=False),
}


def reference_step(w, g, m, *, step, lr, beta1, beta2, eps, weight_decay, bias_correction, maximize):
    """The equations in torch ops; returns the new w and m and the sizes of their terms."""
    if maximize:
        g = -g
    c = 1.0 - beta1**step if bias_correction else 1.0
    decayed = (1.0 - lr * weight_decay) * w
    nu = beta2 * (m / c) ** 2 + (1.0 - beta2) * g**2
    m_new = beta1 * m + (1.0 - beta1) * g
    den = nu.sqrt() + eps
    w_new = decayed - lr * (m_new / c) / den
    m_size = (beta1 * m).abs() + ((1.0 - beta1) * g).abs()
    w_size = decayed.abs() + lr * (m_size / c) / den
    return w_new, m_new, w_size, m_size


def mirror_step(w, g, m, *, step, lr, beta1, beta2, eps, weight_decay, bias_correction, maximize):
    """The kernel's operation sequence, line for line, in the dtype of ``w`` (float32 or float64).

    Coefficients are formed in float64 and rounded once, as adams_step does; ``maximize`` is folded
    into the sign of (1 - beta1), which is exact. Each op below is one IEEE-rounded operation. The
    square root is numpy's: torch 2.13's CPU ``torch.sqrt`` is not correctly rounded (it differs
    from the IEEE square root by one ulp on about 20% of float32 and 1.4% of float64 inputs).
    """
    c = 1.0 - beta1**step if bias_correction else 1.0
    sign = -1.0 if maximize else 1.0
    k = [torch.tensor(x, dtype=w.dtype) for x in
         (1.0 - lr * weight_decay, beta1, sign * (1.0 - beta1), beta2, 1.0 - beta2, 1.0 / c, lr, eps)]
    decay, b1, omb1, b2, omb2, inv_c, lr_, eps_ = k
    mh = m * inv_c                         # m_prev / c_t as m_prev * (1/c_t)
    nu = b2 * (mh * mh) + omb2 * (g * g)
    m_new = b1 * m + omb1 * g
    den = torch.as_tensor(np.sqrt(nu.numpy())) + eps_
    upd = lr_ * (m_new * inv_c) / den      # m/c_t as m * (1/c_t)
    return decay * w - upd, m_new


def make_state(dtype, seed=0):
    """Initial weights (standard normal) and zero momentum, one tensor per shape in SHAPES."""
    gen = torch.Generator().manual_seed(seed)
    ws = [torch.randn(s, generator=gen, dtype=torch.float64).to(dtype) for s in SHAPES]
    return ws, [torch.zeros(s, dtype=dtype) for s in SHAPES]


@functools.lru_cache(maxsize=None)
def _noise(seed):
    """A few seeded standard-normal tensors per shape, drawn once (drawing 60 x 300k normals per
    test would take most of the test's time)."""
    gen = torch.Generator().manual_seed(1000 + seed)
    return [[torch.randn(s, generator=gen, dtype=torch.float64) for s in SHAPES] for _ in range(4)]


def gradients(t, dtype, seed=0):
    """Step t's gradients: a random combination of the noise tensors, a drifting mean, and exact
    zeros at every fifth element."""
    bank = _noise(seed)
    coef = torch.randn(4, generator=torch.Generator().manual_seed(seed * 100_003 + t), dtype=torch.float64)
    out = []
    for i, s in enumerate(SHAPES):
        g = sum(float(c) / 2 * bank[k][i] for k, c in enumerate(coef)) + 0.3 * math.sin(t / 7.0)
        if g.numel() > 3:
            g.view(-1)[::5] = 0.0
        out.append(g.to(dtype))
    return out


def assert_within(got, want, size, rtol, what):
    err = (got.double() - want.double()).abs()
    bound = rtol * size.double()
    bad = err > bound
    assert not bad.any(), (
        f"{what}: {int(bad.sum())} elements off; worst error/size "
        f"{float((err / size.double().clamp_min(1e-300)).max()):.3g} > {rtol}"
    )


def bits(t):
    return t.view(torch.int16 if t.element_size() == 2 else torch.int32 if t.element_size() == 4 else torch.int64)


LONG = ["default", "paper-text", "maximize"]  # "strong-decay" runs 5 steps in the bit-exact test


@pytest.mark.parametrize("name", LONG)
def test_float64_matches_reference_over_60_steps(name):
    """float64 state evolved by the kernel and by the reference independently, 60 steps, 1e-12."""
    hyper = HYPER[name]
    ws, ms = make_state(torch.float64)
    ref_w, ref_m = [w.clone() for w in ws], [m.clone() for m in ms]
    w_scale = [w.abs() for w in ws]  # largest term size each coordinate has held so far
    for t in range(1, STEPS + 1):
        gs = gradients(t, torch.float64)
        _fused.fused_adams_(ws, gs, ms, step=t, **hyper)
        for i, g in enumerate(gs):
            ref_w[i], ref_m[i], w_size, m_size = reference_step(ref_w[i], g, ref_m[i], step=t, **hyper)
            w_scale[i] = torch.maximum(w_scale[i], w_size)
            assert_within(ws[i], ref_w[i], w_scale[i], 1e-12, f"w, shape {SHAPES[i]}, step {t}")
            assert_within(ms[i], ref_m[i], m_size + 1e-300, 1e-12, f"m, shape {SHAPES[i]}, step {t}")


@pytest.mark.parametrize("name", LONG)
def test_float32_matches_reference_every_step(name):
    """float32: each of 60 steps within 1e-6 of the float64 reference taken from the same state.

    The reference restarts from the kernel's float32 state every step: storing w in float32 adds
    half an ulp per step, a random walk that any float32 implementation has and that is not the
    kernel's error (evolved independently for 60 steps, the worst of 300k coordinates drifts by
    2e-6 to 8.5e-6 of its largest term, for these hyperparameters).
    """
    hyper = HYPER[name]
    ws, ms = make_state(torch.float32)
    for t in range(1, STEPS + 1):
        gs = gradients(t, torch.float32)
        before = [(w.double(), m.double()) for w, m in zip(ws, ms)]
        _fused.fused_adams_(ws, gs, ms, step=t, **hyper)
        for i, ((w0, m0), g) in enumerate(zip(before, gs)):
            want_w, want_m, w_size, m_size = reference_step(w0, g.double(), m0, step=t, **hyper)
            assert_within(ws[i], want_w, w_size, 1e-6, f"w, shape {SHAPES[i]}, step {t}")
            assert_within(ms[i], want_m, m_size, 1e-6, f"m, shape {SHAPES[i]}, step {t}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernel_is_the_documented_operation_sequence(dtype):
    """Bit for bit equal to the reordered formula of _kernel.c (x/c as x*(1/c), sign in (1-beta1))."""
    for name in ("default", "maximize", "strong-decay"):
        ws, ms = make_state(dtype, seed=3)
        for t in range(1, 6):
            gs = gradients(t, dtype)
            want = [mirror_step(w, g, m, step=t, **HYPER[name]) for w, g, m in zip(ws, gs, ms)]
            _fused.fused_adams_(ws, gs, ms, step=t, **HYPER[name])
            for (w_want, m_want), w, m in zip(want, ws, ms):
                assert torch.equal(bits(w), bits(w_want)) and torch.equal(bits(m), bits(m_want))


def ulp_distance(a, b):
    """How many representable 16-bit values apart a and b are (+0 and -0 count as equal)."""
    ia, ib = (bits(x).to(torch.int32) for x in (a, b))
    oa = torch.where(ia < 0, -(ia & 0x7FFF), ia)
    ob = torch.where(ib < 0, -(ib & 0x7FFF), ib)
    return (oa - ob).abs()


@pytest.mark.parametrize("dtype, name", [(torch.bfloat16, "default"), (torch.float16, "maximize")])
def test_16bit_is_float32_rounded_once(dtype, name):
    """Every step equals "widen to float32, step in float32, round once to the 16-bit type".

    Bit for bit against the kernel's float32 operation sequence; and against the equations written
    naturally in float32 (m/c_t as a division, (m/c_t)**2, torch.sqrt, ...) to within one unit in
    the last place on a small fraction of elements. The two float32 results differ by a few float32
    ulps of the terms; rounding to 16 bits maps both to the same value unless a rounding midpoint
    between two 16-bit neighbours lies between them, which happens for about (float32 difference) /
    (16-bit ulp) of the elements: around 1e-4 (bfloat16) to 1e-3 (float16). Where the decayed
    weight and the update nearly cancel, the result is much smaller than its terms and a few float32
    ulps of the terms can be several 16-bit ulps of the result; there the bound is the former.
    """
    hyper = HYPER[name]
    ws, ms = make_state(dtype)
    worst_fraction = 0.0
    for t in range(1, STEPS + 1):
        gs = gradients(t, dtype)
        before = [(w.float(), g.float(), m.float()) for w, g, m in zip(ws, gs, ms)]
        _fused.fused_adams_(ws, gs, ms, step=t, **hyper)
        for (w0, g0, m0), w, m in zip(before, ws, ms):
            w_mirror, m_mirror = mirror_step(w0, g0, m0, step=t, **hyper)
            assert torch.equal(bits(w), bits(w_mirror.to(dtype)))
            assert torch.equal(bits(m), bits(m_mirror.to(dtype)))
            w_nat, m_nat, w_size, m_size = reference_step(w0, g0, m0, step=t, **hyper)  # float32
            for got, want, size in ((w, w_nat.to(dtype), w_size), (m, m_nat.to(dtype), m_size)):
                d = ulp_distance(got, want)
                cancelled = (got.float() - want.float()).abs() <= 8 * 2.0**-24 * size
                assert bool(((d <= 1) | cancelled).all())
                if got.numel() >= 1000:
                    worst_fraction = max(worst_fraction, float((d > 0).double().mean()))
    assert worst_fraction < 0.01


def run_steps(dtype, steps, kernel=None, threads=None, chunk=None, seed=5):
    """``steps`` steps from seeded state; the public entry point unless a kernel is given."""
    ws, ms = make_state(dtype, seed=seed)
    for t in range(1, steps + 1):
        gs = gradients(t, dtype)
        if kernel is None:
            _fused.fused_adams_(ws, gs, ms, step=t, **HYPER["default"])
        else:
            _fused.step_(kernel, ws, gs, ms, step=t, threads=threads, chunk=chunk, **HYPER["default"])
    return ws + ms


def same(a, b):
    return all(torch.equal(bits(x), bits(y)) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def pool_kernel(tmp_path_factory):
    """A build without OpenMP (the kernel's own pthread pool) and without optimisation (scalar
    code instead of 8-wide vectors): every operation is still one IEEE operation, so it must give
    the same bits as the default build."""
    kernel = _build.load(tmp_path_factory.mktemp("pool"), extra_flags=("-fno-openmp", "-O0"))
    assert kernel.threading == "pthreads"
    return kernel


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_thread_splits_builds_and_reruns_are_bit_identical(dtype, pool_kernel):
    default = _fused.default_kernel()
    single = run_steps(dtype, 3, default, threads=1)
    for kernel in (default, pool_kernel):
        for threads, chunk in ((2, 64), (3, 1000), (7, 4096), (2, None)):
            assert same(single, run_steps(dtype, 3, kernel, threads, chunk)), (kernel.threading, threads, chunk)
    assert same(run_steps(dtype, 3), run_steps(dtype, 3))  # the public entry point, twice


def test_calls_from_several_python_threads_at_once(pool_kernel):
    for kernel in (_fused.default_kernel(), pool_kernel):
        want = [run_steps(torch.float32, 3, kernel, threads=1, seed=i) for i in range(3)]
        got = [None] * 3

        def work(i):
            got[i] = run_steps(torch.float32, 3, kernel, threads=2, chunk=4096, seed=i)

        workers = [threading.Thread(target=work, args=(i,)) for i in range(3)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert all(g is not None and same(a, g) for a, g in zip(want, got)), kernel.threading


def test_nan_and_inf_propagate_as_ieee_arithmetic():
    w = torch.linspace(-1, 1, 40)
    m = torch.full((40,), 0.1)
    g = torch.randn(40, generator=torch.Generator().manual_seed(0))
    g[3], g[17], g[30] = float("nan"), float("inf"), -float("inf")
    m[25] = float("nan")
    want_w, want_m = mirror_step(w.clone(), g, m.clone(), step=4, **HYPER["default"])
    _fused.fused_adams_([w], [g], [m], step=4, **HYPER["default"])
    assert torch.equal(torch.isnan(w), torch.isnan(want_w)) and torch.isnan(w[[3, 17, 25, 30]]).all()
    assert torch.isnan(m[[3, 25]]).all() and m[17] == float("inf") and m[30] == -float("inf")
    assert torch.equal(torch.isnan(m), torch.isnan(want_m))
    finite = ~torch.isnan(want_w)
    assert torch.equal(w[finite], want_w[finite]) and finite.sum() == 36


def test_zero_denominator():
    """nu = 0 (zero gradient and momentum): the update is 0/eps = 0; with eps = 0 it is 0/0 = NaN."""
    w, g, m = torch.tensor([1.5, -2.0]), torch.zeros(2), torch.zeros(2)
    hyper = dict(HYPER["default"], weight_decay=0.0)
    _fused.fused_adams_([w], [g], [m], step=1, **hyper)
    assert w.tolist() == [1.5, -2.0] and m.tolist() == [0.0, 0.0]
    _fused.fused_adams_([w], [g], [m], step=2, **dict(hyper, eps=0.0))
    assert torch.isnan(w).all()


def test_version_counter_and_empty_calls():
    w, g, m = torch.ones(3), torch.ones(3), torch.zeros(3)
    v = w._version
    _fused.fused_adams_([w], [g], [m], step=1, **HYPER["default"])
    assert w._version > v
    _fused.fused_adams_([], [], [], step=1, **HYPER["default"])
    empty = [torch.empty(0), torch.empty(0, 3)]
    _fused.fused_adams_(empty, [torch.empty(0), torch.empty(0, 3)], [torch.empty(0), torch.empty(0, 3)],
                        step=1, **HYPER["default"])


def _bad_calls():
    f, d = torch.float32, torch.float64
    z = lambda *s, dtype=f: torch.zeros(*s, dtype=dtype)  # noqa: E731
    w = z(4)
    return {
        "same length": ([z(3)], [z(3), z(3)], [z(3)], {}),
        "share a dtype": ([z(3), z(3, dtype=d)], [z(3), z(3, dtype=d)], [z(3), z(3, dtype=d)], {}),
        "grad 0 has dtype": ([z(3)], [z(3, dtype=d)], [z(3)], {}),
        "unsupported dtype": ([z(3, dtype=torch.int32)], [z(3, dtype=torch.int32)], [z(3, dtype=torch.int32)], {}),
        "complex": ([z(3, dtype=torch.complex64)], [z(3, dtype=torch.complex64)], [z(3, dtype=torch.complex64)], {}),
        "not contiguous": ([z(4, 4).t()], [z(4, 4)], [z(4, 4)], {}),
        "shape": ([z(3)], [z(3)], [z(1, 3)], {}),
        "not a tensor": ([z(3)], [[0.0, 0.0, 0.0]], [z(3)], {}),
        "dense": ([z(3)], [z(3).to_sparse()], [z(3)], {}),
        "negated": ([z(3)], [torch._neg_view(z(3))], [z(3)], {}),
        "grad 0 shares memory with param 0": ([w], [w], [z(4)], {}),
        "param 1 shares memory with param 0": ([w, w], [z(4), z(4)], [z(4), z(4)], {}),
        "counted from 1": ([z(3)], [z(3)], [z(3)], {"step": 0}),
    }


@pytest.mark.parametrize("problem", list(_bad_calls()))
def test_bad_inputs_raise_value_error(problem):
    params, grads, exp_avgs, extra = _bad_calls()[problem]
    kwargs = dict(HYPER["default"], step=1) | extra
    with pytest.raises(ValueError, match=problem):
        _fused.fused_adams_(params, grads, exp_avgs, **kwargs)


# ---- the 16-bit conversions on their own ----

def _convert(kernel, fn, dtype, src, out_dtype):
    code = _fused.DTYPE_CODES[dtype]
    dst = torch.empty(src.shape, dtype=out_dtype)
    getattr(kernel.lib, fn)(code, src.data_ptr(), dst.data_ptr(), src.numel())
    return dst


def _narrow_cases(dtype):
    """Random float32 bit patterns, every 16-bit value, and the exact midpoints between neighbours
    (the ties) with their float32 neighbours on either side."""
    gen = torch.Generator().manual_seed(0)
    random = torch.randint(-(2**31), 2**31 - 1, (200_000,), generator=gen, dtype=torch.int64)
    values = torch.arange(-(2**15), 2**15, dtype=torch.int64).to(torch.int16).view(dtype).double()
    values = values[torch.isfinite(values)].unique()
    mid = ((values[1:] + values[:-1]) / 2).float()  # exact in float32
    near = [mid, torch.nextafter(mid, torch.tensor(float("inf"))), torch.nextafter(mid, torch.tensor(-float("inf")))]
    return torch.cat([random.to(torch.int32).view(torch.float32), values.float(), *near,
                      torch.tensor([65504.0, 65519.996, 65520.0, 1e-8, -1e-8, 2.0**-25, 3 * 2.0**-26])])


@pytest.fixture(scope="module")
def portable_kernel(tmp_path_factory):
    # -O1: quicker to build; the conversions are the same IEEE operations at any optimisation level
    return _build.load(tmp_path_factory.mktemp("portable"), extra_flags=("-DADAMS_PORTABLE_F16", "-O1"))


@pytest.mark.parametrize("build", ["default", "portable"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_conversions_match_torch(build, dtype, request):
    kernel = _fused.default_kernel() if build == "default" else request.getfixturevalue("portable_kernel")
    if build == "portable":
        assert kernel.lib.adams_f16_path() == b"portable"
    every = torch.arange(-(2**15), 2**15, dtype=torch.int64).to(torch.int16).view(dtype)
    wide = _convert(kernel, "adams_widen", dtype, every, torch.float32)
    nan = torch.isnan(every)
    assert torch.equal(torch.isnan(wide), nan) and torch.equal(bits(wide[~nan]), bits(every[~nan].float()))
    src = _narrow_cases(dtype)
    narrow = _convert(kernel, "adams_narrow", dtype, src, dtype)
    nan = torch.isnan(src)
    assert torch.equal(torch.isnan(narrow), nan)
    assert torch.equal(bits(narrow[~nan]), bits(src[~nan].to(dtype)))


def test_portable_float16_step_equals_default(portable_kernel):
    results = []
    for kernel in (_fused.default_kernel(), portable_kernel):
        ws, ms = make_state(torch.float16, seed=7)
        for t in range(1, 4):
            gs = gradients(t, torch.float16)
            _fused.step_(kernel, ws, gs, ms, step=t, threads=2, **HYPER["default"])
        results.append(ws + ms)
    assert all(torch.equal(bits(a), bits(b)) for a, b in zip(*results))


# ---- building and caching ----

FAST = ("-O0",)  # these tests check the cache, not the code: compile quickly


def _damage(path, data):
    """Replace a file's contents (as a new file: this process still has the old one mapped)."""
    path.unlink()
    path.write_bytes(data)


def test_cache_is_reused_and_a_damaged_file_rebuilt(tmp_path):
    first = _build.load(tmp_path, extra_flags=FAST)
    assert first.compiled and first.path.exists()
    second = _build.load(tmp_path, extra_flags=FAST)
    assert not second.compiled and second.path == first.path

    _damage(first.path, first.path.read_bytes()[:1000])  # truncated: the digest no longer matches
    rebuilt = _build.load(tmp_path, extra_flags=FAST)
    assert rebuilt.compiled and rebuilt.lib.adams_abi_version() == _build.ABI_VERSION

    # a file recorded with a matching digest that does not load is rebuilt too (a new name: this
    # process would otherwise get back the library it already has open under the old one)
    garbage = b"not a shared object"
    (index,) = tmp_path.glob("*.txt")
    index.with_name("garbage.so").write_bytes(garbage)
    index.write_text(f"garbage.so {hashlib.sha256(garbage).hexdigest()}")
    again = _build.load(tmp_path, extra_flags=FAST)
    assert again.compiled and not _build.load(tmp_path, extra_flags=FAST).compiled
    w, g, m = torch.ones(5), torch.ones(5), torch.zeros(5)
    _fused.step_(again, [w], [g], [m], step=1, threads=1, **HYPER["default"])
    assert torch.isfinite(w).all() and not torch.equal(w, torch.ones(5))


def test_concurrent_builds_never_see_a_partial_file(tmp_path):
    results, errors = [], []

    def build():
        try:
            results.append(_build.load(tmp_path, extra_flags=FAST))
        except Exception as exc:  # noqa: BLE001 - collected and reported below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 3
    assert all(r.lib.adams_abi_version() == _build.ABI_VERSION for r in results)
    assert not list(tmp_path.glob("*.tmp"))


def test_unavailable_kernel_is_reported_not_raised(tmp_path, monkeypatch):
    with pytest.raises(_build.BuildError, match="failed"):
        _build.load(tmp_path, extra_flags=("-fno-such-flag-for-adams",))
    monkeypatch.setattr(_build, "find_compiler", lambda: None)
    with pytest.raises(_build.BuildError, match="no C compiler"):
        _build.load(tmp_path)
    monkeypatch.setattr(_build, "_state", {})
    ok, reason = _fused.fused_available()
    assert not ok and "no C compiler" in reason
    with pytest.raises(_build.BuildError):
        _fused.fused_adams_([torch.ones(1)], [torch.ones(1)], [torch.ones(1)], step=1, **HYPER["default"])


# ---- step counters read and incremented inside the kernel ----

def test_state_steps_give_the_same_bits_as_an_explicit_step():
    """Counters at 0, 4 and 9 in one call: each tensor takes step counter + 1, and the counters
    are incremented; the result equals three calls with explicit steps, bit for bit."""
    before = [0.0, 4.0, 9.0]
    ws, ms = make_state(torch.float32, seed=11)
    ws, ms = ws[:3], ms[:3]
    gs = gradients(1, torch.float32)[:3]
    want_w, want_m = [w.clone() for w in ws], [m.clone() for m in ms]
    for i, t in enumerate(before):
        _fused.fused_adams_([want_w[i]], [gs[i]], [want_m[i]], step=int(t) + 1, **HYPER["default"])
    counters = [torch.tensor(t) for t in before]
    _fused.fused_adams_(ws, gs, ms, state_steps=counters, **HYPER["default"])
    assert [c.item() for c in counters] == [1.0, 5.0, 10.0]
    assert same(ws + ms, want_w + want_m)


@pytest.mark.parametrize("counter, match", [
    (torch.tensor(-1.0), "whole number"),
    (torch.tensor(2.5), "whole number"),
    (torch.tensor(float("nan")), "whole number"),
    (torch.tensor(3.0, dtype=torch.float64), "float32 CPU tensor"),
    (torch.tensor([1.0, 2.0]), "float32 CPU tensor"),
    (3, "float32 CPU tensor"),
])
def test_bad_step_counters_raise_and_write_nothing(counter, match):
    ws, ms = make_state(torch.float32, seed=12)
    ws, ms = ws[:2], ms[:2]
    gs = gradients(1, torch.float32)[:2]
    good = torch.tensor(4.0)
    snapshot = [t.clone() for t in ws + ms]
    with pytest.raises(ValueError, match=match):
        _fused.fused_adams_(ws, gs, ms, state_steps=[good, counter], **HYPER["default"])
    assert same(ws + ms, snapshot) and good.item() == 4.0


def test_shared_or_missing_step_counters_are_errors():
    w, g, m = [torch.ones(3), torch.ones(3)], [torch.ones(3), torch.ones(3)], [torch.zeros(3), torch.zeros(3)]
    shared = torch.tensor(0.0)
    with pytest.raises(ValueError, match="distinct"):
        _fused.fused_adams_(w, g, m, state_steps=[shared, shared], **HYPER["default"])
    with pytest.raises(ValueError, match="2 tensors"):
        _fused.fused_adams_(w, g, m, state_steps=[shared], **HYPER["default"])
    with pytest.raises(ValueError, match="exactly one"):
        _fused.fused_adams_(w, g, m, step=1, state_steps=[shared, torch.tensor(0.0)], **HYPER["default"])
    with pytest.raises(ValueError, match="exactly one"):
        _fused.fused_adams_(w, g, m, **HYPER["default"])
    assert shared.item() == 0.0


def test_a_gradient_aliasing_a_written_tensor_is_an_error():
    """Another tensor's parameter used as this tensor's gradient: one thread would read what
    another writes."""
    a, b = torch.ones(5), torch.ones(5)
    with pytest.raises(ValueError, match="grad 1 shares memory with param 0"):
        _fused.fused_adams_([a, b], [torch.ones(5), a], [torch.zeros(5), torch.zeros(5)], step=1,
                            **HYPER["default"])
