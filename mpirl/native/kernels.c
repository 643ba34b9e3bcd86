/* The few loops of mpirl that numpy can only run as many small calls or as many passes over
 * memory. Each has a numpy twin, which is the reference the tests compare against and the
 * fallback when no C compiler is found (see mpirl/native/__init__.py).
 *
 * Plain C99, no headers beyond the C library; built with `cc -O2 -shared -fPIC`. */
#include <math.h>
#include <stdint.h>

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

static ALWAYS_INLINE double row_value(int64_t r, const int64_t *indptr, int64_t branching,
                                      const int32_t *restrict next, const double *restrict cont,
                                      const double *restrict rbar, const double *restrict V,
                                      double gamma)
{
    int64_t a = branching ? r * branching : indptr[r];
    int64_t b = branching ? a + branching : indptr[r + 1];
    double sum = 0.0;
    for (int64_t k = a; k < b; k++) sum += cont[k] * V[next[k]];
    return rbar[r] + gamma * sum;
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
        double change = fabs(best - V_old[s]);
        if (!(change <= residual)) residual = change;   /* a NaN sticks, as in numpy's max */
        out[s] = best;
    }
    return residual;
}

/* The entry points call the loops above with the row length as a constant for the usual short
 * rows, so that the compiler unrolls the inner sum: a sweep of the benchmark MDP (4 successors)
 * takes about 8% less time than with the length read at run time. */
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
#define Q_ROWS(B) q_rows(indptr, B, next, cont, rbar, V, gamma, n_rows, q)
    WITH_CONSTANT_BRANCHING(Q_ROWS)
#undef Q_ROWS
}

/* out[s] = max over the n_actions rows of state s of q, for states [0, n_states); returns the
 * largest change max |out[s] - V_old[s]| (the sweep's Bellman residual, while out is in cache). */
double bellman_max(const int64_t *indptr, int64_t branching, const int32_t *next,
                   const double *cont, const double *rbar, const double *V, double gamma,
                   int64_t n_actions, int64_t n_states, const double *V_old, double *out)
{
    double residual;
#define MAX_ROWS(B) \
    residual = max_rows(indptr, B, next, cont, rbar, V, gamma, n_actions, n_states, V_old, out)
    WITH_CONSTANT_BRANCHING(MAX_ROWS)
#undef MAX_ROWS
    return residual;
}
