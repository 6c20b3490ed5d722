// Fused elementwise kernels of probcon_ref, for CuPy (driven by probcon_ref/cupy/__init__.py).
//
// Each kernel does in one pass over memory what the array-API reference does in several
// (one launch and one temporary per operation). The mathematics is the reference's, term
// for term; the equation labels are those of the documentation.
//
// REAL is float or double, chosen at compile time (-DREAL=...). Every loop is grid-stride,
// so any launch configuration covers every element; the host test harness runs the same
// source with a grid and block of one (tests/host_kernels.py). No header is included:
// NVRTC provides the math functions, and the host harness includes <cmath> before this file.

// ---------------------------------------------------------------------------------------
// Softmax over one block of anchors :eq:`eq-loss-stable`
// ---------------------------------------------------------------------------------------

// delta[r, c] = F[r, c] - F_{r,p(r)}, in place, with the anchor itself (column self_col + r)
// and its positive (column pos_col + r) set to -inf :eq:`eq-loss-stable`.
extern "C" __global__ void logit_gaps(REAL* logits, const REAL* pos_logit, long long rows, long long cols,
                                      long long self_col, long long pos_col, REAL neg_inf)
{
    for (long long r = blockIdx.y; r < rows; r += gridDim.y) {
        const REAL pos = pos_logit[r];
        REAL* row = logits + r * cols;
        for (long long c = blockIdx.x * (long long)blockDim.x + threadIdx.x; c < cols;
             c += (long long)blockDim.x * gridDim.x) {
            row[c] = (c == self_col + r || c == pos_col + r) ? neg_inf : row[c] - pos;
        }
    }
}

// e[r, c] = exp(delta[r, c] - m[r]), in place; excluded entries (-inf) become 0.
extern "C" __global__ void shifted_exp(REAL* gaps, const REAL* m, long long rows, long long cols)
{
    for (long long r = blockIdx.y; r < rows; r += gridDim.y) {
        const REAL shift = m[r];
        REAL* row = gaps + r * cols;
        for (long long c = blockIdx.x * (long long)blockDim.x + threadIdx.x; c < cols;
             c += (long long)blockDim.x * gridDim.x) {
            row[c] = exp(row[c] - shift);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Debye's expansion at a fixed order n >= n0 :eq:`eq-debye`
// ---------------------------------------------------------------------------------------

// sum_j coeffs[j] t^j by Horner's rule (coefficients of S(t) = sum_k u_k(t) / n^k, or S').
__device__ REAL horner(const REAL* coeffs, int count, REAL t)
{
    REAL acc = coeffs[count - 1];
    for (int j = count - 2; j >= 0; --j) {
        acc = acc * t + coeffs[j];
    }
    return acc;
}

// The normaliser's two forms, n = d/2 - 1 :eq:`eq-normalizer-shift` :eq:`eq-normalizer-peak`:
// shift = log C_d(kappa) - log C_d(0) and peak = shift + kappa. With s = hypot(n, x), r = x / s,
// t = n / s and u = s - n = x r / (1 + t), both share
// common = n log1p(u / 2n) + log1p(u / n) / 2 - (log S(t) - log S(1)):
// shift = common - u, peak = common + n r (1 + t / (1 + r)) / (1 + t).
extern "C" __global__ void normalizer_terms(const REAL* kappa, REAL* shift, REAL* peak, long long size, REAL n,
                                            const REAL* coeffs, int count, REAL log_s_at_one)
{
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < size;
         i += (long long)blockDim.x * gridDim.x) {
        const REAL x = kappa[i];
        const REAL s = hypot(n, x);
        const REAL r = x / s;
        const REAL t = n / s;
        const REAL u = x * (r / (1 + t));
        const REAL common = n * log1p(u / (2 * n)) + (REAL)0.5 * log1p(u / n)
                            - (log(horner(coeffs, count, t)) - log_s_at_one);
        shift[i] = common - u;
        peak[i] = common + n * r * (1 + t / (1 + r)) / (1 + t);
    }
}

// A_d(kappa) = I_{n+1}(x) / I_n(x), the derivative of the same truncated expansion
// :eq:`eq-debye-ratio`: x [1/(n + s) - 1/(2 s^2) - (n / s^3) S'(t) / S(t)], t = n / s.
extern "C" __global__ void bessel_ratio(const REAL* x_in, REAL* out, long long size, REAL n,
                                        const REAL* coeffs, int count, const REAL* deriv, int deriv_count)
{
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < size;
         i += (long long)blockDim.x * gridDim.x) {
        const REAL x = x_in[i];
        const REAL s = hypot(n, x);
        const REAL t = n / s;
        const REAL dlog_sum = horner(deriv, deriv_count, t) / horner(coeffs, count, t);
        const REAL inv_s = 1 / s;
        out[i] = x * (1 / (n + s) - (REAL)0.5 * inv_s * inv_s - n * inv_s * inv_s * inv_s * dlog_sum);
    }
}
