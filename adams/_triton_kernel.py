"""The Triton kernel of the fused AdamS step (imported by :mod:`adams._triton` only when used).

Triton decides when this module is imported whether its kernels compile for a GPU or run in its
interpreter (``TRITON_INTERPRET=1``, on CPU tensors): the tests run this same source under the
interpreter. The kernel uses Triton's builtins only, none of its library functions written in
Triton (``tl.zeros``, ...): those are compiled or interpreted depending on whether Triton was first
imported with ``TRITON_INTERPRET`` set, and a mix of the two fails.

One launch updates every tensor of one dtype. Program ``p`` handles ``BLOCK`` elements of tensor
``tensor_of[p]``, starting at ``start_of[p]``; ``table`` holds, per tensor, the addresses of its
weight, gradient, momentum and step counter and its number of elements. Per element, with
``t = counter + 1`` and ``c = 1 - beta1^t`` (1 without bias correction), ``g = -grad`` when
maximizing:

    w  <- (1 - lr wd) w
    nu  = beta2 (m_prev / c)^2 + (1 - beta2) g^2
    m   = beta1 m_prev + (1 - beta1) g
    w  <- w - lr (m / c) / (sqrt(nu) + eps)

float32, bfloat16 and float16 compute in float32 (the 16-bit types round once when stored);
float64 in float64. Square root and division are the correctly rounded ones (float32's
``sqrt_rn`` and ``div_rn``, not the GPU's fast approximations); the scalars come in float64 (``coef``) and are
rounded once to the working precision. With ``GUARDED``, the 0-d int32 at ``take`` says whether to
take the step (0: nothing is written, as when a gradient is not finite).
"""
import triton
import triton.language as tl


@triton.jit
def adams_step_kernel(table, tensor_of, start_of, coef, take, STORE: tl.constexpr, COMPUTE: tl.constexpr,
                      BIAS_CORRECTION: tl.constexpr, MAXIMIZE: tl.constexpr, GUARDED: tl.constexpr,
                      BLOCK: tl.constexpr):
    p = tl.program_id(0)
    i = tl.load(tensor_of + p)
    start = tl.load(start_of + p)
    row = table + 5 * i
    w_ptr = tl.load(row).to(tl.pointer_type(STORE))
    g_ptr = tl.load(row + 1).to(tl.pointer_type(STORE))
    m_ptr = tl.load(row + 2).to(tl.pointer_type(STORE))
    step_ptr = tl.load(row + 3).to(tl.pointer_type(tl.float32))
    n = tl.load(row + 4)

    # coef (float64): lr, log(beta1), beta1, 1 - beta1, beta2, 1 - beta2, eps, 1 - lr wd
    t = tl.load(step_ptr).to(tl.float64) + 1.0  # this step, counted from 1
    if BIAS_CORRECTION:
        c = 1.0 - tl.exp(t * tl.load(coef + 1))  # 1 - beta1^t
    else:
        c = t * 0.0 + 1.0
    inv_c = (1.0 / c).to(COMPUTE)  # formed in float64 (IEEE division), rounded once
    lr = tl.load(coef).to(COMPUTE)
    b1 = tl.load(coef + 2).to(COMPUTE)
    omb1 = tl.load(coef + 3).to(COMPUTE)
    b2 = tl.load(coef + 4).to(COMPUTE)
    omb2 = tl.load(coef + 5).to(COMPUTE)
    eps = tl.load(coef + 6).to(COMPUTE)
    decay = tl.load(coef + 7).to(COMPUTE)

    offsets = start + tl.arange(0, BLOCK)
    mask = offsets < n
    if GUARDED:
        mask = mask & ((offsets * 0 + tl.load(take)) != 0)  # (builtins only: see the module docstring)
    w = tl.load(w_ptr + offsets, mask=mask).to(COMPUTE)
    g = tl.load(g_ptr + offsets, mask=mask).to(COMPUTE)
    m = tl.load(m_ptr + offsets, mask=mask).to(COMPUTE)
    if MAXIMIZE:
        g = -g
    mh = m * inv_c                                         # m_prev / c
    nu = b2 * (mh * mh) + omb2 * (g * g)                   # from m_prev, not m_t
    m_new = b1 * m + omb1 * g                              # m_t
    if COMPUTE == tl.float64:  # float64 square root and division are IEEE on GPUs
        den = tl.sqrt(nu) + eps
        w_new = decay * w - lr * (m_new * inv_c) / den
    else:  # float32's default ones are fast approximations: ask for the IEEE ones
        den = tl.sqrt_rn(nu) + eps                         # eps outside the square root
        w_new = decay * w - tl.div_rn(lr * (m_new * inv_c), den)
    tl.store(m_ptr + offsets, m_new.to(STORE), mask=mask)
    tl.store(w_ptr + offsets, w_new.to(STORE), mask=mask)
