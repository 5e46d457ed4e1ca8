/* The Parzen estimators of the TPE sampler (tune/tpe_impl.h), one parameter at a time, as Optuna
 * 3.1's _ParzenEstimator defines them with TPESampler's defaults: the prior kernel, the magic
 * clip, the endpoints not considered. tune/tpe.c fits two per parameter (l on the good results,
 * g on the others), draws candidates from l and scores them by log l - log g. */
#include <math.h>
#include <stdlib.h>

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
    for (int i = 0; i < n; i++)
        p->sigma[i] = fmin(fmax(p->sigma[i], minsigma), maxsigma);
    p->sigma[nobs] = high - low;

    /* log w: log wobs - log sum, where most weights are 1. */
    double logsum = log(sum);
    for (int i = 0; i < n; i++) {
        double s = p->sigma[i], wi = i < nobs ? wobs[i] : prior_weight;
        p->logc[i] = (wi == 1 ? 0 : log(wi)) - logsum -
                     kl__log_gauss_mass((low - p->mu[i]) / s, (high - p->mu[i]) / s);
        p->logs[i] = log(s);
        if (!discrete)
            p->logc[i] -= p->logs[i] + LOG_SQRT_2PI;
    }
}

/* Terms below e^-25 (1.4e-11) of the largest are left out of a mixture's sum: with a few
 * thousand kernels, the log density moves by less than 1e-7, and a draw's score with it. */
#define NEGLIGIBLE 25.0

/* Component k's log density at x, its weight included (continuous). */
static double component(const kl__parzen *p, int k, double x)
{
    double z = (x - p->mu[k]) / p->sigma[k];
    return p->logc[k] - 0.5 * z * z;
}

/* Discrete: component k's log mass of [x - 1/2, x + 1/2] (within the range), weight included;
 * and cheaply, an upper bound of it: the interval's width times the density at its point
 * nearest the mean. */
static double mass(const kl__parzen *p, int k, double lo, double hi)
{
    double s = p->sigma[k], mu = p->mu[k];
    return p->logc[k] + kl__log_gauss_mass((lo - mu) / s, (hi - mu) / s);
}

static double mass_bound(const kl__parzen *p, int k, double lo, double hi)
{
    double s = p->sigma[k], mu = p->mu[k];
    double z = (mu < lo ? lo - mu : mu > hi ? mu - hi : 0) / s;
    return p->logc[k] + (hi - lo < 1 ? log(hi - lo) : 0) - p->logs[k] - LOG_SQRT_2PI - 0.5 * z * z;
}

static double sum_exp(const double *c, int n, double max)
{
    double sum = 0, floor = max - NEGLIGIBLE;
    for (int k = 0; k < n; k++)
        if (c[k] > floor)
            sum += exp(c[k] - max);
    return max + log(sum);
}

/* Discrete: exact masses only where the bound says they can matter, against the largest
 * exact mass of the component with the largest bound. */
static double discrete_log_pdf(const kl__parzen *p, double x)
{
    double lo = fmax(x - 0.5, p->low), hi = fmin(x + 0.5, p->high), *c = p->tmp;
    int top = 0;
    for (int k = 0; k < p->n; k++) {
        c[k] = mass_bound(p, k, lo, hi);
        top = c[k] > c[top] ? k : top;
    }
    double max = mass(p, top, lo, hi);
    for (int k = 0; k < p->n; k++) {
        if (k == top || c[k] <= max - NEGLIGIBLE) {
            c[k] = k == top ? max : -INFINITY;
            continue;
        }
        c[k] = mass(p, k, lo, hi);
        max = c[k] > max ? c[k] : max;
    }
    return max == -INFINITY ? max : sum_exp(c, p->n, max);
}

double kl__parzen_log_pdf(const kl__parzen *p, double x)
{
    if (p->discrete)
        return discrete_log_pdf(p, x);
    double max = -INFINITY, *c = p->tmp;
    for (int k = 0; k < p->n; k++) {
        c[k] = component(p, k, x);
        max = c[k] > max ? c[k] : max;
    }
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
