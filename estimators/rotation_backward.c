/* The rotation trick's backward pass, s·Rᵀg = s·g + coef_e·e + coef_q·q per token, in one pass over memory.
 *
 * CPU kernel behind estimators/native_kernel.py (paper §4.2 and A.5; the formulas and the degenerate-point
 * fallbacks are those of `_rotation_coefficients` in estimators/rotation_math.py, whose docstring derives
 * them; float32 roundings differ where the compiler contracts multiply-adds). Rows are taken BLOCK at a time:
 *   1. the five per-token dot products ‖e‖², ‖q‖², eᵀq, eᵀg, qᵀg (and ‖q − e‖² for the inverse-square-
 *      distance scale) accumulate lane-wise in vectors, one row at a time;
 *   2. one transposing tree of shuffles sums the lanes of BLOCK rows at once (`sum_lanes_of_rows`), where a
 *      horizontal sum per row and per product would cost as much as reading the data;
 *   3. the per-token scalars are computed for the whole block with vector arithmetic;
 *   4. the output rows are written while the block's inputs are still in the L1 cache.
 * Written with the vector extensions of GCC and Clang, so the same source builds for x86 and ARM.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define BLOCK 16 /* rows per block and floats per vector; the shuffles and LANE below are written for 16 */
_Static_assert(BLOCK == 16, "sum_lanes_of_rows and LANE are written for 16 lanes");
typedef float vec __attribute__((vector_size(BLOCK * sizeof(float))));
typedef int32_t lanes __attribute__((vector_size(BLOCK * sizeof(int32_t))));
static const lanes LANE = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
#if defined(__clang__) || __GNUC__ >= 12
#define SHUFFLE(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else /* GCC before 12 has only __builtin_shuffle, with the lane indices as a vector */
#define SHUFFLE(a, b, ...) __builtin_shuffle(a, b, (lanes){__VA_ARGS__})
#endif

enum scale { SCALE_NORM_RATIO = 0, SCALE_ONE = 1, SCALE_INVERSE_SQ_DISTANCE = 2 };

/* Up to BLOCK consecutive floats of a row, zero-padded. `readable`: floats that may be read from p (the rest
 * of the array), so that a short chunk is one vector load and a mask wherever the array continues. */
static inline vec load_chunk(const float *p, int64_t available, int64_t readable) {
  vec v;
  if (readable >= BLOCK) {
    memcpy(&v, p, sizeof v); /* a constant size: one vector load */
    if (available < BLOCK) v = (vec)((lanes)v & (LANE < (int32_t)available));
    return v;
  }
  float padded[BLOCK] = {0};
  memcpy(padded, p, (size_t)available * sizeof(float));
  memcpy(&v, padded, sizeof v);
  return v;
}

/* Lane r of the result is the sum of the lanes of rows[r]: four levels of pairwise halving. */
static inline vec sum_lanes_of_rows(const vec *rows) {
  vec halves[8], quarters[4], eighths[2];
  for (int i = 0; i < 8; ++i) {
    const vec a = rows[2 * i], b = rows[2 * i + 1];
    halves[i] = SHUFFLE(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23)
              + SHUFFLE(a, b, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  }
  for (int i = 0; i < 4; ++i) {
    const vec a = halves[2 * i], b = halves[2 * i + 1];
    quarters[i] = SHUFFLE(a, b, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27)
                + SHUFFLE(a, b, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
  }
  for (int i = 0; i < 2; ++i) {
    const vec a = quarters[2 * i], b = quarters[2 * i + 1];
    eighths[i] = SHUFFLE(a, b, 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29)
               + SHUFFLE(a, b, 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31);
  }
  const vec a = eighths[0], b = eighths[1];
  return SHUFFLE(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30)
       + SHUFFLE(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
}

/* max(x, floor) that keeps NaN, as torch's clamp_min. */
static inline float floored(float x, float floor) { return x < floor ? floor : x; }

enum { EE, QQ, EQ, EG, QG, DIST, PRODUCTS };

/* Writes out (n, d) and one_plus_cos (n); returns how many tokens have 1 + cos below `near_opposite`. */
int64_t rotation_backward(const float *restrict g, const float *restrict e, const float *restrict q,
                          float *restrict out, float *restrict one_plus_cos, int64_t n, int64_t d, int scale,
                          int radial_removed, float eps, float near_opposite) {
  int64_t near_count = 0;
  const int with_distance = scale == SCALE_INVERSE_SQ_DISTANCE;
  for (int64_t start = 0; start < n; start += BLOCK) {
    const int64_t rows = n - start < BLOCK ? n - start : BLOCK;
    vec partial[PRODUCTS][BLOCK];
    for (int64_t r = 0; r < BLOCK; ++r) {
      vec ee = {0}, qq = {0}, eq = {0}, eg = {0}, qg = {0}, dist = {0};
      if (r < rows) {
        const int64_t row = (start + r) * d;
        for (int64_t j = 0; j < d; j += BLOCK) {
          const int64_t available = d - j, readable = n * d - row - j;
          const vec ev = load_chunk(e + row + j, available, readable),
                    qv = load_chunk(q + row + j, available, readable),
                    gv = load_chunk(g + row + j, available, readable);
          ee += ev * ev;
          qq += qv * qv;
          eq += ev * qv;
          eg += ev * gv;
          qg += qv * gv;
          if (with_distance) dist += (qv - ev) * (qv - ev);
        }
      }
      partial[EE][r] = ee;
      partial[QQ][r] = qq;
      partial[EQ][r] = eq;
      partial[EG][r] = eg;
      partial[QG][r] = qg;
      partial[DIST][r] = dist;
    }
    float sums[PRODUCTS][BLOCK];
    for (int p = 0; p < PRODUCTS; ++p) {
      if (p == DIST && !with_distance) continue;
      const vec total = sum_lanes_of_rows(partial[p]);
      memcpy(sums[p], &total, sizeof total);
    }
    float coef_g[BLOCK], coef_e[BLOCK], coef_q[BLOCK], valid[BLOCK], opc[BLOCK];
    for (int r = 0; r < BLOCK; ++r) {
      const float e_norm = sqrtf(sums[EE][r]), q_norm = sqrtf(sums[QQ][r]);
      valid[r] = (e_norm > eps && q_norm > eps) ? 1.0f : 0.0f;
      const float safe_e = floored(e_norm, eps), safe_q = floored(q_norm, eps);
      const float cos = sums[EQ][r] / (safe_e * safe_q);
      const float a = sums[EG][r] / safe_e, b = sums[QG][r] / safe_q;
      const float one_plus = cos + 1.0f;
      const float k = one_plus > eps ? (a + b) / floored(one_plus, eps) : 0.0f;
      const float s = scale == SCALE_NORM_RATIO ? safe_q / safe_e
                    : scale == SCALE_ONE        ? 1.0f
                                                : 1.0f / (8.0f * floored(sums[DIST][r], eps));
      float ce = (b * 2.0f - k) * s / safe_e;
      const float cq = -s * k / safe_q;
      if (radial_removed) {
        const float e_dot_v = s * sums[EG][r] + ce * e_norm * e_norm + cq * cos * e_norm * q_norm;
        ce = ce - e_dot_v / (safe_e * safe_e);
      }
      coef_g[r] = s;
      coef_e[r] = ce;
      coef_q[r] = cq;
      opc[r] = one_plus;
    }
    for (int64_t r = 0; r < rows; ++r) {
      one_plus_cos[start + r] = opc[r];
      near_count += opc[r] < near_opposite;
      const int64_t row = (start + r) * d;
      const float ce = coef_e[r], cq = coef_q[r], cg = coef_g[r];
      if (valid[r] != 0.0f) {
        for (int64_t j = 0; j < d; ++j) out[row + j] = ce * e[row + j] + cq * q[row + j] + cg * g[row + j];
      } else {
        memcpy(out + row, g + row, (size_t)d * sizeof(float));
      }
    }
  }
  return near_count;
}
