/*
 * Floor roughness from the end cutting edge (see surface.h).
 *
 * In the section through the tool axis along the feed, a flat-bottom end mill's tooth
 * is its corner radius joining the peripheral edge and the end cutting edge, which
 * rises toward the centre at the dish (concavity) angle so that only the corner region
 * cuts the floor. Successive teeth pass fz apart; the floor is the lower envelope of
 * their profiles, as the surface left by a tool of nose radius r and minor cutting
 * edge angle kappa' in turning (Shaw, Metal Cutting Principles, 2nd ed. 2005, ch. 21:
 * the geometric roughness). With face runout the longest tooth cuts e deeper and its
 * marks, z fz apart, dominate once e exceeds the marks of one feed.
 */
#include "surface.h"

#include <math.h>

double tooth_profile(double u, double r, double dish) {
    double tangent = -r * sin(dish);
    if (u >= r) return HUGE_VAL;
    if (u >= tangent) return r - sqrt(r * r - u * u);
    return r * (1.0 - cos(dish)) + (tangent - u) * tan(dish);
}

/* The floor's height at x: the lowest of the teeth's profiles, tooth 0 the longest. */
static double envelope(double x, double fz, int z, double r, double dish, double e) {
    double period = z * fz, best = HUGE_VAL;
    for (int k = -1; k <= 1; k++) {
        for (int j = 0; j < z; j++) {
            double h = tooth_profile(x - j * fz - k * period, r, dish) - (j == 0 ? e : 0.0);
            if (h < best) best = h;
        }
    }
    return best;
}

double floor_ra(double fz, int z, double r, double dish, double e, double *rt) {
    double dx = z * fz / FLOOR_SAMPLES, sum = 0.0, lo = HUGE_VAL, hi = -HUGE_VAL;
    for (int i = 0; i < FLOOR_SAMPLES; i++) {
        double y = envelope((i + 0.5) * dx, fz, z, r, dish, e);
        sum += y;
        lo = fmin(lo, y);
        hi = fmax(hi, y);
    }
    /* A second pass rather than a buffer: the FMU may run instances in threads. */
    double mean = sum / FLOOR_SAMPLES, dev = 0.0;
    for (int i = 0; i < FLOOR_SAMPLES; i++) dev += fabs(envelope((i + 0.5) * dx, fz, z, r, dish, e) - mean);
    *rt = hi - lo;
    return dev / FLOOR_SAMPLES;
}
