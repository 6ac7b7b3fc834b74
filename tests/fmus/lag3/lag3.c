/*
 * Test FMU for the FMI 3.0 framework: the healthy first-order lag of
 * tests/fmus/faulty, integrated with its exact step solution so tests can
 * compare against u + (y_start - u) exp(-t / tau) to rounding, plus a step
 * counter (Int32) and a settled flag (Boolean) with closed forms of their own.
 */
#include <math.h>

#include "model.h"

static double settled(const ModelState *s) {
    double band = V(settle_rule) == SettleRule_relative ? V(tol) * fabs(V(u)) : V(tol);
    return fabs(V(y) - V(u)) < band ? 1.0 : 0.0;
}

ModelStatus model_initialize(ModelState *s, char *msg, size_t msg_len) {
    (void)msg;
    (void)msg_len;
    V(y) = V(y_start);
    V(steps_taken) = 0;
    V(settled) = settled(s);
    return MODEL_OK;
}

ModelStatus model_do_step(ModelState *s, double h, char *msg, size_t msg_len) {
    (void)msg;
    (void)msg_len;
    /* Exact over any h: the input is constant. */
    V(y) = V(u) + (V(y) - V(u)) * exp(-h / V(tau));
    V(steps_taken) += V(increment);
    V(settled) = settled(s);
    return MODEL_OK;
}

/* ---- model exchange (FMI 3.0) ---------------------------------------------------
 * The same lag for an ODE solver: y' = (u - y) / tau; settled follows y. There are
 * no steps, so steps_taken stays 0. No events. */

ModelStatus model_derivatives(ModelState *s, char *msg, size_t msg_len) {
    (void)msg;
    (void)msg_len;
    V(der_y) = (V(u) - V(y)) / V(tau);
    V(settled) = settled(s);
    return MODEL_OK;
}
