/*
 * Single-pass AdamS step over contiguous CPU arrays (float32, float64, bfloat16, float16).
 * Plain C, no torch headers; compiled and loaded by adams/_fused.py.
 *
 * Per element, step t counted from 1, c_t = 1 - beta1^t (c_t = 1 without bias correction),
 * m_prev = momentum before this step, g = -grad when maximizing:
 *   w  <- (1 - lr*wd) * w
 *   nu  = beta2 * (m_prev / c_t)^2 + (1 - beta2) * g^2
 *   m   = beta1 * m_prev + (1 - beta1) * g
 *   w  <- w - lr * (m / c_t) / (sqrt(nu) + eps)
 * Each element of w, g, m is read once and w, m are written once: 20 bytes per float32 element.
 *
 * Every operation below is one IEEE-754 operation rounded to nearest: the build uses
 * -ffp-contract=off and no -ffast-math, so the vector loop, the scalar tail and any split of the
 * work between threads give bit-identical results. float32 and the 16-bit types compute in float32
 * (the 16-bit ones round to their storage type once, at the end); float64 computes in float64.
 * Nothing is clamped or masked: nu = 0 gives a denominator of eps (an update of 0/eps = 0, or
 * 0/0 = NaN when eps = 0), and NaN or inf in any input propagates as IEEE arithmetic does.
 *
 * Measurements on the development machine (2-core AMD EPYC Zen 3 VM, gcc 12, -O3 -march=native;
 * a shared, noisy machine: medians of 60 interleaved steps, ranges over three runs).
 * 10M float32 elements as 40 arrays of 250k, 2 threads, a fixed even split:
 *   this loop (IEEE sqrt and division, auto-vectorised, 8 lanes)          5.25-5.75 ms
 *   same traffic, no sqrt or division (w = d*w - k*(m+g), m = b1*m + k*g)  5.0-5.4 ms
 *   rsqrt + one Newton step, rcp + one Newton step (AVX intrinsics)        5.4-6.0 ms
 *   exact sqrt, division by rcp + one Newton step                          5.25-5.85 ms
 *   software prefetch 1-4 KiB ahead in 512-element blocks                  6.5-7.0 ms
 *   memcpy of one 40 MB array                                              3.4-4.0 ms
 * In L1 (8k elements, one thread), ns per element: this loop 0.39, no sqrt/division 0.19-0.20,
 * rsqrt/rcp + Newton 0.48, rcp + Newton only 0.37-0.38, with prefetch 0.46-0.48. Zen 3 divides
 * and takes square roots fast enough that the step is bound by DRAM traffic, not arithmetic:
 * the exact IEEE form is within 2-6% of the no-math floor, the approximations gain nothing and
 * would cost a few ulps, and prefetching only adds instructions. -funroll-loops changed nothing
 * (0.34-0.39 ns in L1 with and without; 5.1 vs 5.3 ms out of cache, within noise), so the loop
 * is left as gcc vectorises it.
 * Other dtypes in L1, ns per element per thread: float64 1.08, bfloat16 0.75 (integer rounding
 * adds about 0.4 to float32's 0.34), float16 0.60 with F16C, 2.5 with the portable conversion.
 * Why a kernel of our own: torch.compile of the functional core (adams.functional.adams_update on
 * every tensor, `python benchmarks/optimizer_step.py --compile`) took 8.4 ms on 10M parameters in
 * 40 tensors and 24.3 ms on the 30M-parameter GPT layout, against 4.5 and 12.9 ms for this kernel
 * through adams.AdamS (same run, medians of 30 interleaved rounds), and it compiles for about 20 s
 * on first use. A hand-written in-place version compiled to about 4.0 ms (kernel: 3.8 ms).
 * Threads (see _fused.py for OpenMP against the pthread pool): with the pool, interleaved with
 * torch's own ops, one contiguous chunk per thread took 5.8 ms, 2 chunks 6.6 ms and 4 chunks
 * 6.9 ms; run alone, all three took 5.5-5.7 ms. The caller gives each thread one chunk.
 */
#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(__F16C__)
#include <immintrin.h>
#endif

#define ADAMS_ABI_VERSION 2

enum { ADAMS_F32 = 0, ADAMS_F64 = 1, ADAMS_BF16 = 2, ADAMS_F16 = 3 };

/* 16-bit arrays are widened into float32 blocks of this many elements (3 KiB, stays in L1). */
#define BLOCK 256
#define MAX_WORKERS 255

/* The scalar coefficients, rounded once to the working precision. */
typedef struct {
    float decay, beta1, omb1, beta2, omb2, inv_c, lr, eps;
} coef32;
typedef struct {
    double decay, beta1, omb1, beta2, omb2, inv_c, lr, eps;
} coef64;

/* One step on float32 arrays. The body is the update itself; gcc vectorises it (8 lanes with AVX). */
static void step_f32(float *restrict w, const float *restrict g, float *restrict m, int64_t n,
                     const coef32 *c)
{
    const float decay = c->decay, beta1 = c->beta1, omb1 = c->omb1, beta2 = c->beta2;
    const float omb2 = c->omb2, inv_c = c->inv_c, lr = c->lr, eps = c->eps;
    for (int64_t i = 0; i < n; i++) {
        const float gi = g[i];                                  /* g (grad; the sign of -grad is folded into omb1) */
        const float mp = m[i];                                  /* m_prev */
        const float mh = mp * inv_c;                            /* m_prev / c_t  ==  m_prev * (1/c_t) */
        const float nu = beta2 * (mh * mh) + omb2 * (gi * gi);  /* nu = beta2 (m_prev/c_t)^2 + (1-beta2) g^2 */
        const float mn = beta1 * mp + omb1 * gi;                /* m = beta1 m_prev + (1-beta1) g */
        const float den = sqrtf(nu) + eps;                      /* sqrt(nu) + eps (eps outside the root) */
        const float upd = lr * (mn * inv_c) / den;              /* lr (m/c_t) / (sqrt(nu)+eps), m/c_t == m*(1/c_t) */
        m[i] = mn;                                              /* store m */
        w[i] = decay * w[i] - upd;                              /* w <- (1 - lr wd) w - update */
    }
}

/* The same step in float64 arithmetic, line for line. */
static void step_f64(double *restrict w, const double *restrict g, double *restrict m, int64_t n,
                     const coef64 *c)
{
    const double decay = c->decay, beta1 = c->beta1, omb1 = c->omb1, beta2 = c->beta2;
    const double omb2 = c->omb2, inv_c = c->inv_c, lr = c->lr, eps = c->eps;
    for (int64_t i = 0; i < n; i++) {
        const double gi = g[i];                                 /* g */
        const double mp = m[i];                                 /* m_prev */
        const double mh = mp * inv_c;                           /* m_prev / c_t  ==  m_prev * (1/c_t) */
        const double nu = beta2 * (mh * mh) + omb2 * (gi * gi); /* nu = beta2 (m_prev/c_t)^2 + (1-beta2) g^2 */
        const double mn = beta1 * mp + omb1 * gi;               /* m = beta1 m_prev + (1-beta1) g */
        const double den = sqrt(nu) + eps;                      /* sqrt(nu) + eps */
        const double upd = lr * (mn * inv_c) / den;             /* lr (m/c_t) / (sqrt(nu)+eps) */
        m[i] = mn;                                              /* store m */
        w[i] = decay * w[i] - upd;                              /* w <- (1 - lr wd) w - update */
    }
}

/* ---- 16-bit storage: widen exactly to float32, step, round once (to nearest, ties to even) ---- */

static inline float bits_to_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t f32_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static inline float bf16_to_f32(uint16_t h) { return bits_to_f32((uint32_t)h << 16); } /* exact */

static inline uint16_t f32_to_bf16(float f)
{
    const uint32_t u = f32_to_bits(f);
    /* NaN: set the quiet bit, no rounding; otherwise add half an ulp, ties to even */
    const uint32_t r = f != f ? (u | 0x00400000u) : u + 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(r >> 16);                                /* drop the low 16 bits */
}

#if !defined(__F16C__) || defined(ADAMS_PORTABLE_F16)
#define ADAMS_F16_PATH "portable"
/* IEEE binary16 <-> binary32 in integer arithmetic, written with masks so that gcc vectorises it. */
static inline float f16_to_f32(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exponent = (h >> 10) & 0x1Fu, mantissa = h & 0x3FFu;
    const uint32_t sub = f32_to_bits((float)mantissa * 0x1p-24f);     /* zero/subnormal: exact */
    const uint32_t special = 0x7F800000u | (mantissa << 13);          /* inf or NaN */
    const uint32_t normal = ((exponent + 112u) << 23) | (mantissa << 13); /* rebias 15 -> 127 */
    const uint32_t is_sub = 0u - (uint32_t)(exponent == 0), is_special = 0u - (uint32_t)(exponent == 31);
    const uint32_t mag = (sub & is_sub) | (special & is_special) | (normal & ~(is_sub | is_special));
    return bits_to_f32(sign | mag);
}

static inline uint16_t f32_to_f16(float f)
{
    const uint32_t bits = f32_to_bits(f);
    const uint32_t sign = (bits >> 16) & 0x8000u;
    const uint32_t u = bits & 0x7FFFFFFFu;
    const uint32_t nan = 0x7E00u | ((u >> 13) & 0x3FFu);             /* quiet, top payload bits kept */
    /* |f| < 2^-14 is a half subnormal: 0.5 + |f| rounds at 2^-24 (the ulp of 0.5), to nearest even */
    const uint32_t sub = f32_to_bits(bits_to_f32(u) + 0.5f) - 0x3F000000u;
    /* normal: rebias 127 -> 15 (adding 0xC8000000 subtracts 112 << 23 mod 2^32), round the 13
     * dropped bits to nearest even; a carry into the exponent is the correct rounding up */
    const uint32_t normal = (u + 0xC8000FFFu + ((u >> 13) & 1u)) >> 13;
    const uint32_t is_nan = 0u - (uint32_t)(u > 0x7F800000u);
    const uint32_t is_inf = (0u - (uint32_t)(u >= 0x477FF000u)) & ~is_nan; /* |f| >= 65520 */
    const uint32_t is_sub = 0u - (uint32_t)(u < 0x38800000u);
    const uint32_t is_normal = ~(is_nan | is_inf | is_sub);
    const uint32_t mag = (nan & is_nan) | (0x7C00u & is_inf) | (sub & is_sub) | (normal & is_normal);
    return (uint16_t)(sign | mag);
}
#else
#define ADAMS_F16_PATH "f16c"
#endif

static inline void widen_bf16(float *dst, const uint16_t *src, int64_t n)
{
    for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_f32(src[i]);
}
static inline void narrow_bf16(uint16_t *dst, const float *src, int64_t n)
{
    for (int64_t i = 0; i < n; i++) dst[i] = f32_to_bf16(src[i]);
}

static inline void widen_f16(float *dst, const uint16_t *src, int64_t n)
{
    int64_t i = 0;
#if !defined(ADAMS_PORTABLE_F16) && defined(__F16C__)
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = _cvtsh_ss(src[i]);
#else
    for (; i < n; i++) dst[i] = f16_to_f32(src[i]);
#endif
}
static inline void narrow_f16(uint16_t *dst, const float *src, int64_t n)
{
    int64_t i = 0;
#if !defined(ADAMS_PORTABLE_F16) && defined(__F16C__)
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) dst[i] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT);
#else
    for (; i < n; i++) dst[i] = f32_to_f16(src[i]);
#endif
}

/* 16-bit arrays: widen a block to float32, run step_f32 on it, round back once. */
static void step_16(int is_bf16, uint16_t *w, const uint16_t *g, uint16_t *m, int64_t n,
                    const coef32 *c)
{
    float wb[BLOCK], gb[BLOCK], mb[BLOCK];
    for (int64_t s = 0; s < n; s += BLOCK) {
        const int64_t k = n - s < BLOCK ? n - s : BLOCK;
        if (is_bf16) {
            widen_bf16(wb, w + s, k); widen_bf16(gb, g + s, k); widen_bf16(mb, m + s, k);
        } else {
            widen_f16(wb, w + s, k); widen_f16(gb, g + s, k); widen_f16(mb, m + s, k);
        }
        step_f32(wb, gb, mb, k, c);
        if (is_bf16) {
            narrow_bf16(w + s, wb, k); narrow_bf16(m + s, mb, k);
        } else {
            narrow_f16(w + s, wb, k); narrow_f16(m + s, mb, k);
        }
    }
}

/* ---- one call: the arrays are treated as one concatenated index range, cut into chunks ---- */

typedef struct {
    int dtype;
    int64_t count;
    void *const *w;
    const void *const *g;
    void *const *m;
    const int64_t *start; /* start[a] = index of array a's first element; start[count] = total */
    const double *inv_c;  /* inv_c[a] = 1/c_t of array a (arrays may be at different steps) */
    int64_t chunk;        /* elements per chunk (the last one may be shorter) */
    coef32 c32;           /* the coefficients shared by all arrays; inv_c is set per array */
    coef64 c64;
} job;

static size_t elem_size(int dtype) { return dtype == ADAMS_F64 ? 8 : dtype == ADAMS_F32 ? 4 : 2; }

/* Run elements [lo, hi) of the concatenation of all arrays. */
static void run_range(const job *jb, int64_t lo, int64_t hi)
{
    const size_t es = elem_size(jb->dtype);
    int64_t a = 0, b = jb->count;  /* binary search: the last array with start[a] <= lo */
    while (b - a > 1) {
        const int64_t mid = a + (b - a) / 2;
        if (jb->start[mid] <= lo) a = mid; else b = mid;
    }
    for (; a < jb->count && jb->start[a] < hi; a++) {
        const int64_t base = jb->start[a], numel = jb->start[a + 1] - base;
        const int64_t s = lo > base ? lo - base : 0;
        const int64_t e = hi - base < numel ? hi - base : numel;
        if (e <= s) continue;
        char *w = (char *)jb->w[a] + s * es;
        const char *g = (const char *)jb->g[a] + s * es;
        char *m = (char *)jb->m[a] + s * es;
        coef32 c32 = jb->c32;
        coef64 c64 = jb->c64;
        c32.inv_c = (float)jb->inv_c[a];  /* 1/c_t rounded once to the working precision */
        c64.inv_c = jb->inv_c[a];
        switch (jb->dtype) {
        case ADAMS_F32: step_f32((float *)w, (const float *)g, (float *)m, e - s, &c32); break;
        case ADAMS_F64: step_f64((double *)w, (const double *)g, (double *)m, e - s, &c64); break;
        case ADAMS_BF16: step_16(1, (uint16_t *)w, (const uint16_t *)g, (uint16_t *)m, e - s, &c32); break;
        default: step_16(0, (uint16_t *)w, (const uint16_t *)g, (uint16_t *)m, e - s, &c32); break;
        }
    }
}

/*
 * ---- a small pool of worker threads, used when the kernel is built without OpenMP ----
 * The caller publishes a job and takes chunks itself; sleeping workers are woken and take chunks
 * too, claimed one at a time with a compare-and-swap on `ticket` = (generation << 32) | next chunk.
 * The caller returns once every chunk is finished, never waiting for a worker that has not claimed
 * one: on a busy machine a descheduled worker costs nothing, the caller just does more chunks. A
 * worker that wakes late sees a newer generation, or no chunk left, and goes back to sleep.
 */
static struct {
    pthread_mutex_t caller;    /* held by the one thread whose job is published */
    pthread_mutex_t lock;      /* guards the fields below that are not atomic */
    pthread_cond_t wake;
    int workers;               /* threads started in this process */
    pid_t pid;                 /* the process that started them (a fork child has none) */
    uint32_t generation;       /* of the published job; changed under `lock` */
    const job *current;        /* the published job, valid while its chunks are unfinished */
    int64_t nchunks;           /* of the published job */
    _Atomic uint64_t ticket;   /* (generation << 32) | index of the next unclaimed chunk */
    _Atomic int64_t done;      /* chunks of the published job finished */
    _Atomic int helpers;       /* workers still allowed to join the published job */
} pool = {.caller = PTHREAD_MUTEX_INITIALIZER, .lock = PTHREAD_MUTEX_INITIALIZER,
          .wake = PTHREAD_COND_INITIALIZER};

/* Claim the next chunk of generation `gen` (which has `nchunks` chunks); 0 when none is left. */
static int claim(uint32_t gen, int64_t nchunks, int64_t *index)
{
    uint64_t t = atomic_load(&pool.ticket);
    for (;;) {
        if ((uint32_t)(t >> 32) != gen || (int64_t)(t & 0xFFFFFFFFu) >= nchunks) return 0;
        if (atomic_compare_exchange_weak(&pool.ticket, &t, t + 1)) {
            *index = (int64_t)(t & 0xFFFFFFFFu);
            return 1;
        }
    }
}

static void run_chunk(const job *jb, int64_t k);

static void run_chunks(const job *jb, uint32_t gen, int64_t nchunks)
{
    int64_t k;
    while (claim(gen, nchunks, &k)) {
        run_chunk(jb, k);
        atomic_fetch_add(&pool.done, 1);
    }
}

static void *worker_main(void *unused)
{
    (void)unused;
    uint32_t seen = 0;
    pthread_mutex_lock(&pool.lock);
    for (;;) {
        while (pool.generation == seen) pthread_cond_wait(&pool.wake, &pool.lock);
        seen = pool.generation;
        const job *jb = pool.current;  /* only dereferenced after a successful claim */
        const int64_t nchunks = pool.nchunks;
        pthread_mutex_unlock(&pool.lock);
        if (atomic_fetch_sub(&pool.helpers, 1) > 0) run_chunks(jb, seen, nchunks);
        pthread_mutex_lock(&pool.lock);
    }
    return NULL;
}

static void forget_workers_after_fork(void)
{
    pthread_mutex_init(&pool.caller, NULL);
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pool.workers = 0;
}

/* Start workers until there are `wanted` of them (called with `lock` held). */
static void ensure_workers(int wanted)
{
    static int atfork_registered = 0;
    if (pool.pid != getpid()) { pool.pid = getpid(); pool.workers = 0; }
    if (!atfork_registered) atfork_registered = !pthread_atfork(NULL, NULL, forget_workers_after_fork);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);  /* workers inherit a mask blocking every signal */
    while (pool.workers < wanted && pool.workers < MAX_WORKERS) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        const int failed = pthread_create(&t, &attr, worker_main, NULL);
        pthread_attr_destroy(&attr);
        if (failed) break;  /* fewer workers: the caller does more of the chunks */
        pool.workers++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void run_chunk(const job *jb, int64_t k)
{
    const int64_t lo = k * jb->chunk, total = jb->start[jb->count];
    run_range(jb, lo, total - lo < jb->chunk ? total : lo + jb->chunk);
}

/* Run all chunks of `jb` with up to `threads` threads (the caller included). */
static void run_job(job *jb, int64_t nchunks, int threads)
{
#ifdef _OPENMP
    /* Built with OpenMP, the kernel uses the OpenMP runtime torch has already loaded (same soname),
     * so the step runs on torch's own, usually still spinning, worker threads. */
    if (threads > 1 && nchunks > 1) {
#pragma omp parallel for num_threads(threads) schedule(static, 1)
        for (int64_t k = 0; k < nchunks; k++) run_chunk(jb, k);
        return;
    }
#endif
    /* one thread or one chunk, or another thread's job is running: do it all here */
    if (threads <= 1 || nchunks <= 1 || pthread_mutex_trylock(&pool.caller) != 0) {
        run_range(jb, 0, jb->start[jb->count]);
        return;
    }
    pthread_mutex_lock(&pool.lock);
    ensure_workers(threads - 1);
    const uint32_t gen = ++pool.generation ? pool.generation : ++pool.generation; /* never 0 */
    pool.current = jb;
    pool.nchunks = nchunks;
    atomic_store(&pool.done, 0);
    atomic_store(&pool.helpers, threads - 1);
    atomic_store(&pool.ticket, (uint64_t)gen << 32);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    run_chunks(jb, gen, nchunks);
    for (int spins = 0; atomic_load(&pool.done) < nchunks; spins++)  /* chunks held by workers */
        if (spins > 64) sched_yield();
    pthread_mutex_unlock(&pool.caller);
}

int adams_abi_version(void) { return ADAMS_ABI_VERSION; }

const char *adams_threading(void)
{
#ifdef _OPENMP
    return "openmp";
#else
    return "pthreads";
#endif
}

const char *adams_f16_path(void) { return ADAMS_F16_PATH; }

/* The 16-bit conversions on their own, for tests: dtype is ADAMS_BF16 or ADAMS_F16. */
void adams_widen(int dtype, const uint16_t *src, float *dst, int64_t n)
{
    if (dtype == ADAMS_BF16) widen_bf16(dst, src, n); else widen_f16(dst, src, n);
}

void adams_narrow(int dtype, const float *src, uint16_t *dst, int64_t n)
{
    if (dtype == ADAMS_BF16) narrow_bf16(dst, src, n); else narrow_f16(dst, src, n);
}

/*
 * One AdamS step on `count` arrays of `dtype` with `numel[a]` elements each; maximize != 0 negates g.
 *
 * Step counts. With `steps` NULL every array takes step `step` (counted from 1). Otherwise
 * `steps[a]` points to array a's float32 step counter (torch.optim keeps one 0-d float32 tensor per
 * parameter): each is read, checked to be a whole number >= 0, and incremented by 1 in float32
 * arithmetic (as torch._foreach_add_ does) only after the update; array a then takes step
 * t_a = *steps[a] + 1. c_t = 1 - beta1^t (C pow, as Python's float ** int), or 1 when
 * bias_correction == 0; 1/c_t is formed in float64 and rounded once to the working precision.
 *
 * Up to `threads` threads share the work in chunks of `chunk` elements (the caller picks both; any
 * values give the same result). Returns 0; -1 for an unknown dtype; -2 if out of memory; -3 if
 * there are 2^32 chunks or more; -4 if a step counter is not a whole number >= 0 (or `step` < 1);
 * -5 if some c_t is 0. Nothing is written unless 0 is returned.
 */
int adams_step(int dtype, int64_t count, void *const *w, const void *const *g, void *const *m,
               const int64_t *numel, float *const *steps, double step, double lr, double beta1,
               double beta2, double eps, double weight_decay, int bias_correction, int maximize,
               int threads, int64_t chunk)
{
    if (dtype < ADAMS_F32 || dtype > ADAMS_F16) return -1;
    if (threads < 1) threads = 1;
    if (threads > MAX_WORKERS + 1) threads = MAX_WORKERS + 1;
    if (chunk < 1) chunk = 1;
    int64_t *start = malloc((size_t)(count + 1) * sizeof(int64_t));
    double *inv_c = malloc((size_t)(count > 0 ? count : 1) * sizeof(double));
    float *next = steps ? malloc((size_t)(count > 0 ? count : 1) * sizeof(float)) : NULL;
    int status = 0;
    if (!start || !inv_c || (steps && !next)) { status = -2; goto out; }

    start[0] = 0;
    for (int64_t a = 0; a < count; a++) start[a + 1] = start[a] + numel[a];
    const int64_t total = start[count];
    const int64_t nchunks = (total + chunk - 1) / chunk;
    if (nchunks >= ((int64_t)1 << 32)) { status = -3; goto out; } /* must fit the ticket's 32 bits */

    for (int64_t a = 0; a < count; a++) {
        double t = step;
        if (steps) {
            const float before = *steps[a];
            if (!(before >= 0.0f) || before != floorf(before)) { status = -4; goto out; }
            next[a] = before + 1.0f;                             /* the counter after this step */
            t = (double)next[a];
        }
        if (!(t >= 1.0) || t != floor(t)) { status = -4; goto out; }
        const double c = bias_correction ? 1.0 - pow(beta1, t) : 1.0;  /* c_t = 1 - beta1^t */
        if (c == 0.0) { status = -5; goto out; }
        inv_c[a] = 1.0 / c;
    }

    job jb = {.dtype = dtype, .count = count, .w = w, .g = g, .m = m, .start = start, .inv_c = inv_c,
              .chunk = chunk};
    const double sign = maximize ? -1.0 : 1.0;
    /* coefficients in float64, then rounded once to the working precision */
    jb.c64 = (coef64){1.0 - lr * weight_decay,    /* 1 - lr wd */
                      beta1, sign * (1.0 - beta1), /* (1-beta1) g with g = -grad: (-(1-beta1)) grad */
                      beta2, 1.0 - beta2,          /* g^2 = grad^2, so no sign here */
                      1.0, lr, eps};               /* inv_c: per array, see run_range */
    jb.c32 = (coef32){(float)jb.c64.decay, (float)jb.c64.beta1, (float)jb.c64.omb1,
                      (float)jb.c64.beta2, (float)jb.c64.omb2, 1.0f,
                      (float)jb.c64.lr, (float)jb.c64.eps};
    run_job(&jb, nchunks, nchunks < threads ? (int)nchunks : threads);
    if (steps)
        for (int64_t a = 0; a < count; a++) *steps[a] = next[a];
out:
    free(start);
    free(inv_c);
    free(next);
    return status;
}
