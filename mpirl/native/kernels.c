/* The few loops of mpirl that numpy can only run as many small calls or as many passes over
 * memory. Each has a numpy twin, which is the reference the tests compare against and the
 * fallback when no C compiler is found (see mpirl/native/__init__.py).
 *
 * C99 and the C library, built with `cc -O2 -shared -fPIC -ffp-contract=off`; on x86-64 with
 * GCC or clang, one loop also has an AVX2 version, chosen at run time when the CPU has AVX2. */
#include <math.h>
#include <stdint.h>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_AVX2_PATH 1
#endif

#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(address) __builtin_prefetch(address)
#define ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define PREFETCH(address) ((void)0)
#define ALWAYS_INLINE inline
#endif

/* ---- sum-tree (mpirl/replay/sumtree.py) ------------------------------------------------------
 * One flat heap: node i has children 2i and 2i + 1, leaf j lives at leaf0 + j. The highest
 * stored level is [top_lo, 2 top_lo); nothing above it is stored (its running sum stands in). */

/* Set leaves idx[i] to values[i] in order (so a repeated leaf keeps its last value) and add each
 * change to the leaf's stored ancestors. Everything is checked before anything is written.
 * Returns 0, or 1 for an index outside [0, capacity), or 2 for a negative or non-finite value. */
int sumtree_update(double *tree, int64_t leaf0, int64_t top_lo, int64_t capacity,
                   const int64_t *idx, const double *values, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        if (idx[i] < 0 || idx[i] >= capacity) return 1;
        if (!(values[i] >= 0.0 && values[i] < INFINITY)) return 2;   /* NaN fails both */
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t node = leaf0 + idx[i];
        double delta = values[i] - tree[node];
        tree[node] = values[i];
        for (node >>= 1; node >= top_lo; node >>= 1) tree[node] += delta;
    }
    return 0;
}

/* For ascending prefix sums v[0..n), the leaf j with sum(leaves[:j]) <= v < sum(leaves[:j+1])
 * (clipped to capacity - 1) into leaf[i], and its value into value[i]; `value` may be `v`.
 * The top level is walked once, left to right, alongside the sorted prefixes. Below it the
 * prefixes descend together, a level at a time: the reads of one level are independent, so the
 * processor overlaps their cache misses (one prefix at a time waits for each miss in turn, 5x
 * slower at 1e6 leaves). */
void sumtree_find(const double *tree, int64_t top_lo, int64_t leaf0, int64_t capacity,
                  const double *v, int64_t n, int64_t *leaf, double *value)
{
    double *x = value;      /* what is left of each prefix below its current node */
    int64_t *node = leaf;   /* each prefix's current node */
    int64_t j = 0;          /* top-level node holding the current prefix */
    double before = 0.0;    /* sum of the top-level nodes left of j */
    for (int64_t i = 0; i < n; i++) {
        double prefix = v[i];
        while (j < top_lo - 1 && before + tree[top_lo + j] <= prefix) before += tree[top_lo + j++];
        x[i] = prefix - before;
        node[i] = top_lo + j;
        if (top_lo < leaf0) PREFETCH(&tree[node[i] << 1]);
    }
    for (int64_t lo = top_lo; lo < leaf0; lo <<= 1) {
        for (int64_t i = 0; i < n; i++) {
            int64_t child = node[i] << 1;             /* left child */
            double left = tree[child];
            int go_right = x[i] >= left;
            x[i] -= go_right ? left : 0.0;
            node[i] = child + go_right;
            if ((lo << 1) < leaf0) PREFETCH(&tree[node[i] << 1]);   /* read at the next level */
        }
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t found = node[i] - leaf0;
        if (found > capacity - 1) found = capacity - 1;
        leaf[i] = found;
        value[i] = tree[leaf0 + found];
    }
}

/* The sum of the top level: the total of all leaves. */
double sumtree_total(const double *tree, int64_t top_lo)
{
    double total = 0.0;
    for (int64_t j = 0; j < top_lo; j++) total += tree[top_lo + j];
    return total;
}

/* ---- Bellman backup (mpirl/mdp/backup.py) ----------------------------------------------------
 * Row r = (s, a) of a slice has transitions [start(r), start(r + 1)): start(r) = indptr[r], or
 * r * branching when every row has `branching` of them (indptr then unread). Its value is
 *     q(r) = rbar[r] + gamma * sum_k cont[k] V[next[k]]
 * One pass reads each transition once, with no temporaries: the whole point of these kernels. */

/* Rows of four transitions (the generated MDPs' default) sum their products pairwise,
 * (p0 + p1) + (p2 + p3), as the AVX2 path below does lane by lane: a result is then the same
 * bits whichever path, and whichever CPU, computed it. */
static ALWAYS_INLINE double row_value4(int64_t r, const int32_t *restrict next,
                                       const double *restrict cont, const double *restrict rbar,
                                       const double *restrict V, double gamma)
{
    const int32_t *n = next + 4 * r;
    const double *c = cont + 4 * r;
    double sum = (c[0] * V[n[0]] + c[1] * V[n[1]]) + (c[2] * V[n[2]] + c[3] * V[n[3]]);
    return rbar[r] + gamma * sum;
}

static ALWAYS_INLINE double row_value(int64_t r, const int64_t *indptr, int64_t branching,
                                      const int32_t *restrict next, const double *restrict cont,
                                      const double *restrict rbar, const double *restrict V,
                                      double gamma)
{
    if (branching == 4) return row_value4(r, next, cont, rbar, V, gamma);
    int64_t a = branching ? r * branching : indptr[r];
    int64_t b = branching ? a + branching : indptr[r + 1];
    double sum = 0.0;
    for (int64_t k = a; k < b; k++) sum += cont[k] * V[next[k]];
    return rbar[r] + gamma * sum;
}

/* The running residual after a state's change: their maximum, where a NaN sticks, as in numpy's
 * max (the solver then never calls the sweep converged). */
static ALWAYS_INLINE double settle_max(double change, double residual)
{
    return residual != residual || change <= residual ? residual : change;
}

/* Folds state s's best value into out and the running residual max |out[s] - V_old[s]|. */
static ALWAYS_INLINE double settle(int64_t s, double best, const double *V_old, double *out,
                                   double residual)
{
    out[s] = best;
    return settle_max(fabs(best - V_old[s]), residual);
}

static ALWAYS_INLINE void q_rows(const int64_t *indptr, int64_t branching, const int32_t *next,
                                 const double *cont, const double *rbar, const double *V,
                                 double gamma, int64_t n_rows, double *q)
{
    for (int64_t r = 0; r < n_rows; r++)
        q[r] = row_value(r, indptr, branching, next, cont, rbar, V, gamma);
}

static ALWAYS_INLINE double max_rows(const int64_t *indptr, int64_t branching,
                                     const int32_t *next, const double *cont, const double *rbar,
                                     const double *V, double gamma, int64_t n_actions,
                                     int64_t n_states, const double *V_old, double *out)
{
    double residual = 0.0;
    for (int64_t s = 0; s < n_states; s++) {
        int64_t r = s * n_actions;
        double best = row_value(r, indptr, branching, next, cont, rbar, V, gamma);
        for (int64_t a = 1; a < n_actions; a++) {
            double q = row_value(r + a, indptr, branching, next, cont, rbar, V, gamma);
            if (q > best) best = q;
        }
        residual = settle(s, best, V_old, out, residual);
    }
    return residual;
}

/* ---- rows of four transitions, four rows at a time (x86-64 with AVX2) ------------------------
 * One gather of V per row and one load each of a row's next states and probabilities. With
 * fewer load instructions per state the core keeps more states' random reads of V in flight:
 * on the 1e6-state benchmark MDP a sweep takes about 11% less time than the scalar loop
 * (medians 24.3 against 27.3 ms, AMD Zen 4). Used when the CPU has AVX2 and mpirl_simd != 0. */
#ifdef HAVE_AVX2_PATH
int mpirl_simd = -1;   /* -1: decide from the CPU on first use; 0: scalar only (the tests' switch) */

static int use_avx2(void)
{
    if (mpirl_simd < 0) {
        __builtin_cpu_init();
        mpirl_simd = __builtin_cpu_supports("avx2") ? 1 : 0;
    }
    return mpirl_simd;
}

/* Q of rows r .. r + 3. */
__attribute__((target("avx2"))) static ALWAYS_INLINE __m256d
four_rows_avx2(int64_t r, const int32_t *next, const double *cont, const double *rbar,
               const double *V, __m256d gamma)
{
    const int32_t *n = next + 4 * r;
    const double *c = cont + 4 * r;
#define PRODUCTS(i) _mm256_mul_pd(_mm256_loadu_pd(c + 4 * (i)), \
                    _mm256_i32gather_pd(V, _mm_loadu_si128((const __m128i *)(n + 4 * (i))), 8))
    /* hadd: (p0 + p1 of rows r, r + 1 | p2 + p3 of rows r, r + 1), the same for rows r + 2, r + 3 */
    __m256d h01 = _mm256_hadd_pd(PRODUCTS(0), PRODUCTS(1));
    __m256d h23 = _mm256_hadd_pd(PRODUCTS(2), PRODUCTS(3));
#undef PRODUCTS
    __m256d sums = _mm256_add_pd(_mm256_permute2f128_pd(h01, h23, 0x20),
                                 _mm256_permute2f128_pd(h01, h23, 0x31));
    return _mm256_add_pd(_mm256_loadu_pd(rbar + r), _mm256_mul_pd(gamma, sums));
}

__attribute__((target("avx2")))
static void q_rows4_avx2(const int32_t *next, const double *cont, const double *rbar,
                         const double *V, double gamma, int64_t n_rows, double *q)
{
    const __m256d g = _mm256_set1_pd(gamma);
    int64_t r = 0;
    for (; r + 4 <= n_rows; r += 4)
        _mm256_storeu_pd(q + r, four_rows_avx2(r, next, cont, rbar, V, g));
    for (; r < n_rows; r++) q[r] = row_value4(r, next, cont, rbar, V, gamma);
}

/* How the four-action loop below prefetches P: -1 decides from the CPU on first use (the
 * non-temporal hint on AMD, T0 elsewhere), 0 T0, 1 non-temporal (the benchmark's and tests'
 * switch). The hint changes only the speed, never a result.
 *
 * Why it depends on the CPU: the sweep writes a new V and the next sweep reads it at random.
 * On AMD (Zen 4) the L3 is a victim cache: read plainly, each line of P (224 MB on the
 * benchmark MDP) passes through it on its way out of L2 and pushes out the freshly written V;
 * the non-temporal hint keeps P out, and a sweep takes about 10% less time (21.6 against 24.3
 * ms). On Intel (a Xeon VM with a 2 MB L2 per core) the same hint brings P into L1 only, past
 * the L2 streamer, and streaming P halves in speed: with V's reads in L1 a sweep took 33 ms
 * with it, 17 ms with T0; on the benchmark MDP 49-55 ms against 44-48 ms. */
int mpirl_stream_hint = -1;

static int stream_nta(void)
{
    if (mpirl_stream_hint < 0) {
        __builtin_cpu_init();
        mpirl_stream_hint = __builtin_cpu_is("amd") ? 1 : 0;
    }
    return mpirl_stream_hint;
}

/* Fetch the P of state s (next: 64 bytes, cont: 128, rbar: 32) ahead of its use, with `hint`
 * (a compile-time constant, as _mm_prefetch wants: states4x4_avx2 is inlined once per hint). */
#define PREFETCH_STATE(s, hint)                                                \
    do {                                                                       \
        _mm_prefetch((const char *)(next + 16 * (s)), hint);                   \
        _mm_prefetch((const char *)(cont + 16 * (s)), hint);                   \
        _mm_prefetch((const char *)(cont + 16 * (s) + 8), hint);               \
        _mm_prefetch((const char *)(rbar + 4 * (s)), hint);                    \
    } while (0)

/* max_rows for four actions of four transitions: a state's rows are one group of four and its
 * maximum is taken in registers; the residual of each run of 256 states comes afterwards, as
 * vectors over the run (in L1 by then; state by state it cost about 7% of a sweep). P's arrays
 * are prefetched 8 states ahead, with the hint above. Altogether this path takes a sweep of the
 * benchmark MDP in 21.9 ms, the scalar loop in 27.2 (medians, one process, AMD Zen 4). */
__attribute__((target("avx2")))
static ALWAYS_INLINE double states4x4_avx2(const int32_t *next, const double *cont,
                                           const double *rbar, const double *V, double gamma,
                                           int64_t n_states, const double *V_old, double *out,
                                           const int nta)
{
    const __m256d g = _mm256_set1_pd(gamma), sign = _mm256_set1_pd(-0.0);
    __m256d most = _mm256_setzero_pd(), nan = _mm256_setzero_pd();
    double residual = 0.0;
    for (int64_t s0 = 0; s0 < n_states; s0 += 256) {
        int64_t s1 = n_states - s0 < 256 ? n_states : s0 + 256, s;
        for (s = s0; s < s1; s++) {
            int64_t ahead = s + 8 < n_states ? s + 8 : s;
            if (nta)
                PREFETCH_STATE(ahead, _MM_HINT_NTA);
            else
                PREFETCH_STATE(ahead, _MM_HINT_T0);
            __m256d q = four_rows_avx2(4 * s, next, cont, rbar, V, g);
            __m128d m = _mm_max_pd(_mm256_castpd256_pd128(q), _mm256_extractf128_pd(q, 1));
            out[s] = _mm_cvtsd_f64(_mm_max_sd(m, _mm_unpackhi_pd(m, m)));
        }
        for (s = s0; s + 4 <= s1; s += 4) {
            __m256d change = _mm256_andnot_pd(sign, _mm256_sub_pd(_mm256_loadu_pd(out + s),
                                                                  _mm256_loadu_pd(V_old + s)));
            nan = _mm256_or_pd(nan, _mm256_cmp_pd(change, change, _CMP_UNORD_Q));
            most = _mm256_max_pd(most, change);   /* drops NaNs: `nan` keeps them */
        }
        for (; s < s1; s++) residual = settle_max(fabs(out[s] - V_old[s]), residual);
    }
    double lanes[4];
    _mm256_storeu_pd(lanes, most);
    if (_mm256_movemask_pd(nan)) residual = NAN;
    for (int i = 0; i < 4; i++) residual = settle_max(lanes[i], residual);
    return residual;
}
#undef PREFETCH_STATE

__attribute__((target("avx2")))
static double max_states4x4_avx2(const int32_t *next, const double *cont, const double *rbar,
                                 const double *V, double gamma, int64_t n_states,
                                 const double *V_old, double *out)
{
    if (stream_nta())
        return states4x4_avx2(next, cont, rbar, V, gamma, n_states, V_old, out, 1);
    return states4x4_avx2(next, cont, rbar, V, gamma, n_states, V_old, out, 0);
}

/* max_rows for rows of four transitions and any number of actions but four: Q of a run of
 * states goes into a small buffer, then its maxima are taken. */
__attribute__((target("avx2")))
static double max_rows4_avx2(const int32_t *next, const double *cont, const double *rbar,
                             const double *V, double gamma, int64_t n_actions, int64_t n_states,
                             const double *V_old, double *out)
{
    if (n_actions == 4)
        return max_states4x4_avx2(next, cont, rbar, V, gamma, n_states, V_old, out);
    double q[1024], residual = 0.0;
    const int64_t per_run = 1024 / n_actions;   /* the caller checks n_actions <= 1024 */
    for (int64_t s0 = 0; s0 < n_states; s0 += per_run) {
        int64_t states = n_states - s0 < per_run ? n_states - s0 : per_run;
        int64_t r0 = s0 * n_actions;
        q_rows4_avx2(next + 4 * r0, cont + 4 * r0, rbar + r0, V, gamma, states * n_actions, q);
        for (int64_t i = 0; i < states; i++) {
            const double *qs = q + i * n_actions;
            double best = qs[0];
            for (int64_t a = 1; a < n_actions; a++)
                best = qs[a] > best ? qs[a] : best;
            residual = settle(s0 + i, best, V_old, out, residual);
        }
    }
    return residual;
}
#endif

/* The entry points call the loops above with the row length as a constant for the usual short
 * rows, so that the compiler unrolls the inner sum: a sweep of the benchmark MDP (4 successors)
 * took 0-10% less time (noisy runs) than with the length read at run time. */
#define WITH_CONSTANT_BRANCHING(loop)                                       \
    switch (branching) {                                                    \
    case 1: loop(1); break;                                                 \
    case 2: loop(2); break;                                                 \
    case 3: loop(3); break;                                                 \
    case 4: loop(4); break;                                                 \
    case 8: loop(8); break;                                                 \
    default: loop(branching);                                               \
    }

/* q[r] for rows [0, n_rows). */
void bellman_q(const int64_t *indptr, int64_t branching, const int32_t *next, const double *cont,
               const double *rbar, const double *V, double gamma, int64_t n_rows, double *q)
{
#ifdef HAVE_AVX2_PATH
    if (branching == 4 && use_avx2()) {
        q_rows4_avx2(next, cont, rbar, V, gamma, n_rows, q);
        return;
    }
#endif
#define Q_ROWS(B) q_rows(indptr, B, next, cont, rbar, V, gamma, n_rows, q)
    WITH_CONSTANT_BRANCHING(Q_ROWS)
#undef Q_ROWS
}

/* out[s] = max over the n_actions rows of state s of q, for states [0, n_states); returns the
 * largest change max |out[s] - V_old[s]| (the sweep's Bellman residual, while out is in cache).
 * out must not overlap V or V_old: a sweep reads only the previous sweep's values (Jacobi). */
double bellman_max(const int64_t *indptr, int64_t branching, const int32_t *next,
                   const double *cont, const double *rbar, const double *V, double gamma,
                   int64_t n_actions, int64_t n_states, const double *V_old, double *out)
{
#ifdef HAVE_AVX2_PATH
    if (branching == 4 && n_actions <= 1024 && use_avx2())
        return max_rows4_avx2(next, cont, rbar, V, gamma, n_actions, n_states, V_old, out);
#endif
    double residual;
#define MAX_ROWS(B) \
    residual = max_rows(indptr, B, next, cont, rbar, V, gamma, n_actions, n_states, V_old, out)
    WITH_CONSTANT_BRANCHING(MAX_ROWS)
#undef MAX_ROWS
    return residual;
}

/* ---- the MDP benchmark's floors (mpirl/bench/mdp.py) -----------------------------------------
 * Two parts of a sweep, each timed alone: what it cannot go below on a given machine. */

/* A checksum of the n 64-bit words at `words`: nothing but reading them once, in order (a
 * sweep's read of its transition arrays). */
uint64_t read_in_order(const uint64_t *words, int64_t n)
{
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    int64_t k = 0;
    for (; k + 4 <= n; k += 4) {
        a0 += words[k];
        a1 += words[k + 1];
        a2 += words[k + 2];
        a3 += words[k + 3];
    }
    for (; k < n; k++) a0 += words[k];
    return a0 + a1 + a2 + a3;
}

/* The sum of V[next[k]] for k < n: a sweep's random reads of V and nothing else. Plain loads
 * into four independent sums, which keep more reads in flight than the sweep's gathers (on the
 * benchmark MDP 29.6 against 36.9 ms, Intel Xeon VM). */
double read_at(const double *V, const int32_t *next, int64_t n)
{
    double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
    int64_t k = 0;
    for (; k + 4 <= n; k += 4) {
        a0 += V[next[k]];
        a1 += V[next[k + 1]];
        a2 += V[next[k + 2]];
        a3 += V[next[k + 3]];
    }
    for (; k < n; k++) a0 += V[next[k]];
    return (a0 + a1) + (a2 + a3);
}
