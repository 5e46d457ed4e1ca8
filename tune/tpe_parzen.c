/* The Parzen estimators of the TPE sampler (tune/tpe_impl.h), one parameter at a time, as Optuna
 * 3.1's _ParzenEstimator defines them with TPESampler's defaults: the prior kernel, the magic
 * clip, the endpoints not considered. tune/tpe.c fits two per parameter (l on the good results,
 * g on the others), draws candidates from l and scores them by log l - log g. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tune/tpe_impl.h"

#define SQRT1_2      0.70710678118654752440
#define LOG_SQRT_2PI 0.91893853320467274178

int kl__tpe_gamma(int64_t n)
{
    int64_t g = (n + 9) / 10; /* ceil(0.1 n): Optuna's float product rounds to it for n <= 250 */
    return g < 25 ? (int)g : 25;
}

double kl__tpe_weight(int n, int i)
{
    int ramp = n < 25 ? 0 : n - 25;
    if (i >= ramp)
        return 1.0;
    /* numpy.linspace(1 / n, 1, ramp): start + i * step, the last exactly 1. */
    double start = 1.0 / n;
    if (ramp == 1)
        return start;
    return i == ramp - 1 ? 1.0 : start + i * ((1.0 - start) / (ramp - 1));
}

void kl__tpe_weights(int n, double *w)
{
    for (int i = 0; i < n; i++)
        w[i] = kl__tpe_weight(n, i);
}

static double norm_cdf(double x)
{
    return 0.5 * erfc(-x * SQRT1_2);
}

/* Acklam's rational approximation, refined by one Halley step on erfc. */
double kl__norm_ppf(double p)
{
    static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,
                               -2.759285104469687e+02, 1.383577518672690e+02,
                               -3.066479806614716e+01, 2.506628277459239e+00};
    static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02,
                               -1.556989798598866e+02, 6.680131188771972e+01,
                               -1.328068155288572e+01};
    static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01,
                               -2.400758277161838e+00, -2.549732539343734e+00,
                               4.374664141464968e+00,  2.938163982698783e+00};
    static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                               3.754408661907416e+00};
    if (!(p > 0))
        return -INFINITY;
    if (!(p < 1))
        return INFINITY;
    double x;
    if (p < 0.02425 || p > 1 - 0.02425) {
        double q = sqrt(-2 * log(p < 0.5 ? p : 1 - p));
        x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
        if (p > 0.5)
            x = -x;
    } else {
        double q = p - 0.5, r = q * q;
        x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
            (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
    }
    double e = norm_cdf(x) - p;
    double u = e * exp(LOG_SQRT_2PI + 0.5 * x * x);
    return x - u / (1 + x * u / 2);
}

double kl__log_gauss_mass(double a, double b)
{
    if (a < -9 && b > 9) /* 1 less two tails below 1e-19: log 1 up to a double's rounding */
        return 0;
    double m;
    if (b <= 0)
        m = 0.5 * (erfc(-b * SQRT1_2) - erfc(-a * SQRT1_2));
    else if (a >= 0)
        m = 0.5 * (erfc(a * SQRT1_2) - erfc(b * SQRT1_2));
    else
        m = 1 - 0.5 * erfc(-a * SQRT1_2) - 0.5 * erfc(b * SQRT1_2);
    return m > 0 ? log(m) : -INFINITY;
}

/* Sorts order[0..n) by (mu, index): the ties of numpy's argsort broken by the trial order. */
static void sort_by_mu(const double *mu, int32_t *order, int n)
{
    for (int i = 0; i < n; i++)
        order[i] = i;
    /* Shell sort: n is at most the sweep's trials, and this runs once per group and parameter. */
    for (int gap = n / 2; gap > 0; gap /= 2)
        for (int i = gap; i < n; i++) {
            int32_t x = order[i];
            int j = i;
            while (j >= gap && (mu[order[j - gap]] > mu[x] ||
                                (mu[order[j - gap]] == mu[x] && order[j - gap] > x))) {
                order[j] = order[j - gap];
                j -= gap;
            }
            order[j] = x;
        }
}

/* order for observations already sorted: the prior after the observations equal to its mu. */
static void order_sorted(const double *mu, int32_t *order, int nobs)
{
    double m = mu[nobs];
    int lo = 0, hi = nobs;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (mu[mid] <= m)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (int i = 0, k = 0; i <= nobs; i++)
        order[i] = i == lo ? nobs : k++;
}

void kl__parzen_fit(kl__parzen *p, const double *obs, const double *wobs, int nobs,
                    double prior_weight, double low, double high, bool discrete, bool sorted,
                    int32_t *order)
{
    kl__parzen_fit_memo(p, obs, wobs, nobs, prior_weight, low, high, discrete, sorted, order, NULL);
}

void kl__parzen_fit_memo(kl__parzen *p, const double *obs, const double *wobs, int nobs,
                         double prior_weight, double low, double high, bool discrete, bool sorted,
                         int32_t *order, const kl__parzen_memo *memo)
{
    int n = nobs + 1;
    p->n = n;
    p->low = low;
    p->high = high;
    p->discrete = discrete;
    double sum = prior_weight;
    for (int i = 0; i < nobs; i++) {
        p->mu[i] = obs[i];
        p->w[i] = wobs[i];
        sum += wobs[i];
    }
    p->mu[nobs] = 0.5 * (low + high);
    p->w[nobs] = prior_weight;
    for (int i = 0; i < n; i++)
        p->w[i] /= sum;

    if (sorted)
        order_sorted(p->mu, order, nobs);
    else
        sort_by_mu(p->mu, order, n);
    for (int r = 0; r < n; r++) {
        double m = p->mu[order[r]];
        double left = r == 0 ? low : p->mu[order[r - 1]];
        double right = r == n - 1 ? high : p->mu[order[r + 1]];
        p->sigma[order[r]] = fmax(m - left, right - m);
    }
    if (n >= 2) { /* consider_endpoints off: the two ends take their inner gap */
        p->sigma[order[0]] = p->mu[order[1]] - p->mu[order[0]];
        p->sigma[order[n - 1]] = p->mu[order[n - 1]] - p->mu[order[n - 2]];
    }
    double maxsigma = high - low, minsigma = (high - low) / fmin(100.0, 1.0 + n);
    p->sigma_floor = minsigma; /* maxsigma and the prior's are at least minsigma too */
    /* fmin(fmax(sigma, minsigma), maxsigma) without libm's calls: the two differ only on zeros
     * of both signs (the gaps and bounds are never -0) and a NaN (a NaN gap takes minsigma
     * either way). */
    for (int i = 0; i < n; i++) {
        double v = p->sigma[i] > minsigma ? p->sigma[i] : minsigma;
        p->sigma[i] = v < maxsigma ? v : maxsigma;
    }
    p->sigma[nobs] = high - low;

    /* log w: log wobs - log sum, where most weights are 1. With a memo, the logs of the
     * weights, and of a sigma and its mass when the slot's sigma is the one fitted there last
     * (the same mu, low and high: the same values), come from it. */
    double logsum = log(sum);
    for (int i = 0; i < n; i++) {
        double s = p->sigma[i], wi = i < nobs ? wobs[i] : prior_weight, lmass;
        int32_t slot = memo && i < nobs ? memo->id[i] : -1;
        if (slot >= 0 && memo->sigma[slot] == s) {
            lmass = memo->lmass[slot];
            p->logs[i] = memo->logs[slot];
        } else {
            lmass = kl__log_gauss_mass((low - p->mu[i]) / s, (high - p->mu[i]) / s);
            p->logs[i] = log(s);
            if (slot >= 0) {
                memo->sigma[slot] = s;
                memo->lmass[slot] = lmass;
                memo->logs[slot] = p->logs[i];
            }
        }
        p->logc[i] = (wi == 1 ? 0 : slot >= 0 ? memo->logw[slot] : log(wi)) - logsum - lmass;
        if (!discrete)
            p->logc[i] -= p->logs[i] + LOG_SQRT_2PI;
    }
}

#define LN2 0.69314718055994531

/* exp_small's polynomial: e^r for |r| <= ln 2 / 2, a degree-12 Taylor polynomial. */
static inline double exp_poly(double r)
{
    double p = 1.0 / 479001600;
    p = p * r + 1.0 / 39916800;
    p = p * r + 1.0 / 3628800;
    p = p * r + 1.0 / 362880;
    p = p * r + 1.0 / 40320;
    p = p * r + 1.0 / 5040;
    p = p * r + 1.0 / 720;
    p = p * r + 1.0 / 120;
    p = p * r + 1.0 / 24;
    p = p * r + 1.0 / 6;
    p = p * r + 0.5;
    p = p * r + 1.0;
    return p * r + 1.0;
}

/* e^x for x in [-60, 60], to about 2e-16 relative: 2^k e^r with |r| <= ln 2 / 2. Branch-free
 * and inline, so the compiler vectorises the loops below, where libm's exp, erfc and log took
 * most of a proposal's time. */
static inline double exp_small(double x)
{
    const double shifter = 0x1.8p52; /* adding it rounds to an integer, kept in the low bits */
    double kd = x * 1.4426950408889634 + shifter, k = kd - shifter;
    double r = (x - k * 6.93147180369123816490e-01) - k * 1.90821492927058770002e-10;
    double p = exp_poly(r);
    uint64_t bits, scale;
    double s;
    memcpy(&bits, &kd, sizeof bits);
    scale = (bits - 0x4338000000000000ull + 1023) << 52; /* 2^k: k is bits' low part */
    memcpy(&s, &scale, sizeof s);
    return p * s;
}

/* exp_small(x) for |x| < 0.34, bit for bit: x * log2(e) is then below 1/2 in magnitude, so kd
 * rounds to the shifter itself, k is +0, r is x (x - 0 - 0, a -0 kept), and the scale is 2^0 = 1,
 * which leaves p as it is. */
static inline double exp_near0(double x)
{
    return exp_poly(x);
}

/* The largest of c[0..n), four at a time. */
static double max_of(const double *c, int n)
{
    double m[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    int k = 0;
    for (; k + 4 <= n; k += 4)
        for (int i = 0; i < 4; i++)
            m[i] = c[k + i] > m[i] ? c[k + i] : m[i];
    for (; k < n; k++)
        m[0] = c[k] > m[0] ? c[k] : m[0];
    double a = m[0] > m[1] ? m[0] : m[1], b = m[2] > m[3] ? m[2] : m[3];
    return a > b ? a : b;
}

/* The terms of sum_exp below are taken a block of kernels at a time: a block whose largest c is
 * 25 or more below the max holds only terms that are exactly 0, so it is skipped (a proposal
 * scores candidates drawn near the good trials against a bad group of up to a few thousand
 * kernels sorted by mu, and about a third of them lie that far from any one candidate). */
#define BLOCK 8

/* Whether [k0, k1) of c holds a kept term, one whose c[k] - max is above -25. Rounding is
 * monotone, so the block's largest c decides for every c in it (a NaN, skipped here, makes a
 * zero term either way). */
static inline bool block_live(const double *c, int k0, int k1, double max)
{
    double m = -INFINITY;
    for (int k = k0; k < k1; k++)
        m = c[k] > m ? c[k] : m;
    return m - max > -25;
}

/* c[k] <- its term e^(c[k] - max), 0 where that is below e^-25 (1.4e-11 of the largest). */
static inline void terms(double *c, int k0, int k1, double max)
{
    for (int k = k0; k < k1; k++) {
        double d = c[k] - max;
        c[k] = d > -25 ? exp_small(d > 60 ? 60 : d) : 0.0;
    }
}

/* The runs of blocks with a kept term: the next one's start at or after a (a multiple of BLOCK),
 * n or more if none, and its end in *b. */
static inline int next_run(const double *c, int n, double max, int a, int *b)
{
    while (a < n && !block_live(c, a, a + BLOCK < n ? a + BLOCK : n, max))
        a += BLOCK;
    int e = a;
    while (e < n && block_live(c, e, e + BLOCK < n ? e + BLOCK : n, max))
        e = e + BLOCK < n ? e + BLOCK : n;
    *b = e;
    return a;
}

/* Adds the terms f[k] c[k] (f NULL: all 1) of [a, b) to the sum's four lanes: lane i takes the
 * k = i mod 4 below n - n % 4 in order, lane 0 the rest after them; the lanes are then added
 * pairwise. Runs come in order, and a skipped term is +0 (s + 0 is s), so the sum is the one
 * over every kernel, bit for bit. */
static inline void lanes_add(double sum[4], const double *c, const double *f, int a, int b, int n)
{
    int n4 = n - n % 4, e = b < n4 ? b : n4, k = a;
    for (; k < e; k += 4)
        for (int i = 0; i < 4; i++)
            sum[i] += f ? f[k + i] * c[k + i] : c[k + i];
    for (; k < b; k++)
        sum[0] += f ? f[k] * c[k] : c[k];
}

/* log sum_k e^c[k], max about the largest term's log: terms below e^-25 (1.4e-11) of it are
 * left out, which moves the log density by less than 1e-7 with a few thousand kernels. c is
 * overwritten. */
static double sum_exp(double *c, int n, double max)
{
    double sum[4] = {0, 0, 0, 0};
    int b;
    for (int a = next_run(c, n, max, 0, &b); a < n; a = next_run(c, n, max, b, &b)) {
        terms(c, a, b, max); /* a run of live blocks, in one loop */
        lanes_add(sum, c, NULL, a, b, n);
    }
    return max + log((sum[0] + sum[1]) + (sum[2] + sum[3]));
}

static const double gl_t[] = {0, 0.5384693101056831, -0.5384693101056831, 0.9061798459386640,
                              -0.9061798459386640};
static const double gl_w[] = {0.5688888888888889, 0.4786286704993665, 0.4786286704993665,
                              0.2369268850561891, 0.2369268850561891};

/* Whether every quadrature exponent of the kernels in [a, b) is below 0.34 in magnitude (f holds
 * their zm): computed as quadrature computes them. */
static inline bool exps_near0(const kl__parzen *p, const double *f, int a, int b, double width)
{
    int large = 0;
    for (int k = a; k < b; k++)
        for (int i = 1; i < 5; i++) {
            double d = 0.5 * width / p->sigma[k] * gl_t[i], e = -f[k] * d - 0.5 * d * d;
            large |= !(fabs(e) < 0.34);
        }
    return !large;
}

/* The quadrature's factor f[k] for the kernels k in [a, b), f holding their zm on entry: the
 * nodes' terms summed in order, the middle node's w[0] e^0 = w[0] (added to 0 first). Blocks
 * whose exponents are all small (kernels wide against the interval and not far from x: nearly
 * all of them) take exp_near0, the others exp_small; each kind a run of blocks at a time. */
static void quadrature(const kl__parzen *p, double *f, int a, int b, double width)
{
    /* First for the whole run, from the largest |zm| and the smallest sigma: a bound on every
     * |exponent| (with room for rounding) below 0.34 proves the per-block tests true. */
    double zmax = 0, h = 0.5 * width / p->sigma_floor * 0.9061798459386640 * (1 + 1e-9);
    bool nan = false;
    for (int k = a; k < b; k++) {
        double z = fabs(f[k]);
        zmax = z > zmax ? z : zmax;
        nan |= z != z;
    }
    bool all_near0 = !nan && zmax * h + 0.5 * h * h < 0.33;
    while (a < b) {
        int e = all_near0 ? b : a + BLOCK < b ? a + BLOCK : b;
        bool near0 = all_near0 || exps_near0(p, f, a, e, width);
        while (e < b && exps_near0(p, f, e, e + BLOCK < b ? e + BLOCK : b, width) == near0)
            e = e + BLOCK < b ? e + BLOCK : b;
        if (near0)
            for (int k = a; k < e; k++) {
                double zm = f[k], half = 0.5 * width / p->sigma[k], acc = gl_w[0];
                for (int i = 1; i < 5; i++) {
                    double d = half * gl_t[i];
                    acc += gl_w[i] * exp_near0(-zm * d - 0.5 * d * d);
                }
                f[k] = width <= 0.25 * p->sigma[k] ? acc * 0.5 : 1;
            }
        else
            for (int k = a; k < e; k++) {
                double zm = f[k], half = 0.5 * width / p->sigma[k], acc = gl_w[0];
                for (int i = 1; i < 5; i++) {
                    double d = half * gl_t[i], x = -zm * d - 0.5 * d * d;
                    acc += gl_w[i] * exp_small(x > 60 ? 60 : x < -60 ? -60 : x);
                }
                f[k] = width <= 0.25 * p->sigma[k] ? acc * 0.5 : 1;
            }
        a = e;
    }
}

/* Discrete: a value's probability is each kernel's mass over [x - 1/2, x + 1/2] within the
 * range. Where that interval is narrow against the kernel (at most sigma / 4), 5-point
 * Gauss-Legendre gives it to a double's rounding as e^c * f (f about 1, c shifted by log 2 to
 * keep the max near the largest term), the other kernels take erfc as e^c with f 1. c comes
 * first for every kernel; f (four exps: the middle node's is e^0, exactly 1, since zm and half
 * are finite with sigma at least (high - low) / 100 > 0) only for the blocks with a kept term. */
static double discrete_log_pdf(const kl__parzen *p, double x)
{
    double lo = fmax(x - 0.5, p->low), hi = fmin(x + 0.5, p->high), *c = p->tmp, *f = p->tmp2;
    double lw = hi - lo < 1 ? log(hi - lo) : 0, mid = 0.5 * (lo + hi), width = hi - lo;
    for (int k = 0; k < p->n; k++) {
        double zm = (mid - p->mu[k]) / p->sigma[k];
        double cn = p->logc[k] + lw - p->logs[k] - LN2 - LOG_SQRT_2PI - 0.5 * zm * zm;
        c[k] = cn + LN2;
        f[k] = zm; /* kept for the quadrature below, which overwrites it */
    }
    for (int k = 0; !(width <= 0.25 * p->sigma_floor) && k < p->n; k++) /* none below it */
        if (!(width <= 0.25 * p->sigma[k])) {
            double s = p->sigma[k];
            c[k] = p->logc[k] + kl__log_gauss_mass((lo - p->mu[k]) / s, (hi - p->mu[k]) / s);
        }
    double max = max_of(c, p->n);
    if (max == -INFINITY)
        return max;
    double sum[4] = {0, 0, 0, 0};
    int b;
    for (int a = next_run(c, p->n, max, 0, &b); a < p->n; a = next_run(c, p->n, max, b, &b)) {
        quadrature(p, f, a, b, width);
        terms(c, a, b, max);
        lanes_add(sum, c, f, a, b, p->n);
    }
    return max + log((sum[0] + sum[1]) + (sum[2] + sum[3]));
}

double kl__parzen_log_pdf(const kl__parzen *p, double x)
{
    if (p->discrete)
        return discrete_log_pdf(p, x);
    double *c = p->tmp;
    for (int k = 0; k < p->n; k++) {
        double z = (x - p->mu[k]) / p->sigma[k];
        c[k] = p->logc[k] - 0.5 * z * z;
    }
    double max = max_of(c, p->n);
    return max == -INFINITY ? max : sum_exp(c, p->n, max);
}

/* The first index whose running sum of w exceeds u (numpy's searchsorted, side right). */
static int pick(const double *w, int n, double u)
{
    double cum = 0;
    for (int i = 0; i < n; i++) {
        cum += w[i];
        if (u < cum)
            return i;
    }
    return n - 1;
}

double kl__parzen_sample(const kl__parzen *p, double u1, double u2)
{
    int k = pick(p->w, p->n, u1);
    double mu = p->mu[k], s = p->sigma[k];
    double pa = norm_cdf((p->low - mu) / s), pb = norm_cdf((p->high - mu) / s);
    double x = mu + s * kl__norm_ppf(pa + u2 * (pb - pa));
    x = fmin(fmax(x, p->low), p->high);
    if (!p->discrete)
        return x;
    double first = p->low + 0.5, last = p->high - 0.5;
    return fmin(fmax(nearbyint(x - first) + first, first), last);
}

void kl__parzen_categorical(const int *obs, const double *wobs, int nobs, double prior_weight,
                            int k, double *pmf)
{
    double sum = prior_weight;
    for (int i = 0; i < nobs; i++)
        sum += wobs[i];
    double v = prior_weight / (nobs + 1), row = k * v + 1;
    double base = prior_weight / sum / k;
    for (int i = 0; i < nobs; i++)
        base += wobs[i] / sum * v / row;
    for (int c = 0; c < k; c++)
        pmf[c] = base;
    for (int i = 0; i < nobs; i++)
        pmf[obs[i]] += wobs[i] / sum / row;
}

int kl__parzen_categorical_sample(const int *obs, const double *w, int nobs, double prior_weight,
                                  int k, double u1, double u2)
{
    int i = pick(w, nobs + 1, u1);
    double v = prior_weight / (nobs + 1), row = k * v + 1, cum = 0;
    for (int c = 0; c < k; c++) {
        cum += i < nobs ? (v + (obs[i] == c)) / row : 1.0 / k;
        if (cum >= u2)
            return c;
    }
    return k - 1;
}
