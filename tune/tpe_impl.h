/* Private to tune/tpe.c and its tests: the Parzen estimators of one parameter, as Optuna 3.1's
 * _ParzenEstimator builds them (univariate, consider_prior, consider_magic_clip, not
 * consider_endpoints), and the good/bad split's rules. Numeric parameters are a mixture of
 * normals truncated to [low, high], one per observation and one for the prior; categorical ones
 * a mixture of rows of choice probabilities. */
#ifndef KILN_TUNE_TPE_IMPL_H
#define KILN_TUNE_TPE_IMPL_H

#include <stdbool.h>
#include <stdint.h>

/* The good group's size for n results: min(ceil(0.1 n), 25) (Optuna's default_gamma). */
int kl__tpe_gamma(int64_t n);
/* The weights of n observations in trial order (Optuna's default_weights): 1 each below 25;
 * else a ramp from 1/n to 1 over the oldest n - 25, then 25 ones. */
void kl__tpe_weights(int n, double *w);
/* The weight of observation i of n (kl__tpe_weights' w[i]). */
double kl__tpe_weight(int n, int i);
/* The standard normal's quantile function, to about 1e-15 relative. */
double kl__norm_ppf(double p);
/* log(Phi(b) - Phi(a)) for a <= b, accurate in either tail; -INFINITY when it underflows. */
double kl__log_gauss_mass(double a, double b);

/* A numeric parameter's mixture. The arrays hold n components: the observations in the order
 * given, then the prior (mu (low + high) / 2, sigma high - low). */
typedef struct kl__parzen {
    int n;
    double *mu, *sigma;
    double *w;          /* the normalised weights */
    double *logc;       /* log w - log sigma - log Z, Z the component's mass inside [low, high] */
    double *logs;       /* log sigma */
    double *tmp, *tmp2; /* scratch of n each for kl__parzen_log_pdf */
    double low, high;
    double sigma_floor; /* the clip's floor: every sigma is at least this */
    bool
        discrete; /* integer coordinates: a value's probability is the mass of [x - 1/2, x + 1/2] */
} kl__parzen;

/* Fits p on nobs observations obs with weights wobs (kl__tpe_weights) and the prior's weight,
 * on [low, high] (discrete: the integers' range widened by 1/2 each side). p's arrays and
 * order must hold nobs + 1 entries. Sigmas: the larger gap to a sorted neighbour (the two ends
 * take their inner gap), clipped to [(high - low) / min(100, n + 1), high - low]; the prior's is
 * high - low. Neighbours are by (mu, index); sorted says obs is in that order already. */
void kl__parzen_fit(kl__parzen *p, const double *obs, const double *wobs, int nobs,
                    double prior_weight, double low, double high, bool discrete, bool sorted,
                    int32_t *order);
/* What a sampler keeps between fits of the same parameter, by slot (its trials): each slot's
 * weight's log, and the sigma last fitted in it with that sigma's log and log mass in [low, high]
 * (NAN: none yet). A slot's mu, low and high must not change. */
typedef struct kl__parzen_memo {
    const int32_t *id;            /* [nobs]: observation i's slot */
    const double *logw;           /* [slots]: log of the slot's weight, where it is not 1 */
    double *sigma, *logs, *lmass; /* [slots] */
} kl__parzen_memo;
/* kl__parzen_fit with a memo: the same mixture, bit for bit, with fewer logs and erfcs. */
void kl__parzen_fit_memo(kl__parzen *p, const double *obs, const double *wobs, int nobs,
                         double prior_weight, double low, double high, bool discrete, bool sorted,
                         int32_t *order, const kl__parzen_memo *memo);
double kl__parzen_log_pdf(const kl__parzen *p, double x);
/* A draw: component by u1 over the weights, then the truncated normal's quantile at u2
 * (discrete: rounded to the nearest integer, ties to even, inside the range). */
double kl__parzen_sample(const kl__parzen *p, double u1, double u2);

/* A categorical parameter's mixture over k choices: row i (of an observation of choice c_i) is
 * prior_weight / (nobs + 1) for every choice plus 1 at c_i, normalised; the prior's row is
 * uniform. pmf[k] receives the mixture's probabilities. */
void kl__parzen_categorical(const int *obs, const double *wobs, int nobs, double prior_weight,
                            int k, double *pmf);
/* A draw as Optuna's: component by u1, then the choice from its row by u2. w: nobs + 1
 * normalised weights (the prior's last). */
int kl__parzen_categorical_sample(const int *obs, const double *w, int nobs, double prior_weight,
                                  int k, double u1, double u2);

#endif
