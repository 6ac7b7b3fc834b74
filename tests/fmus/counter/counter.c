/*
 * Test FMU: an integer counter driven by model time.
 *
 * count is a function of the time alone, not a running sum, so it does not
 * depend on the communication step size, and get/set FMU state, reset and
 * rejected steps cannot make it drift.
 */
#include <math.h>
#include <stdio.h>

#include "model.h"

/* fmi2Integer is a 32-bit int: a count outside it cannot be reported. */
#define INTEGER_MIN -2147483648.0
#define INTEGER_MAX 2147483647.0

static ModelStatus update(ModelState *s, double t, char *msg, size_t msg_len) {
    /* Step ends arrive as sums of step sizes (0.1 + ... + 0.1): a whole second
     * that is missed by a rounding error still counts. */
    double seconds = floor(t + 1e-9 * fmax(1.0, fabs(t)));
    double sign = V(count_down) != 0.0 ? -1.0 : 1.0;
    double count = V(start) + sign * V(increment) * seconds;
    if (count < INTEGER_MIN || count > INTEGER_MAX) {
        snprintf(msg, msg_len, "count = %.0f at t = %g s is outside the 32-bit Integer range",
                 count, t);
        return MODEL_ERROR;
    }
    V(elapsed_seconds) = seconds;
    V(count) = count;
    V(even) = fmod(count, 2.0) == 0.0 ? 1.0 : 0.0;
    return MODEL_OK;
}

ModelStatus model_initialize(ModelState *s, char *msg, size_t msg_len) {
    return update(s, s->time, msg, msg_len);
}

ModelStatus model_do_step(ModelState *s, double h, char *msg, size_t msg_len) {
    return update(s, s->time + h, msg, msg_len);
}
