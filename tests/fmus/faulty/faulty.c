/*
 * Test FMU: a first-order lag with injectable faults.
 *
 * The healthy model is integrated with its exact step solution, so tests can
 * compare against u + (y_start - u) exp(-t / tau) to rounding. Each fault acts
 * only for its own fault code and only from the first step that reaches
 * fault_time: a run with fault = 0, or one that stops before fault_time, is
 * always safe to run in the test process.
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

/* s: smaller time constants make the healthy model refuse to start, so the
 * runner sees an initialization error that depends on a parameter value. */
#define TAU_MIN 0.001

enum { HEALTHY = 0, STEP_ERROR = 1, HANG = 2, CRASH = 3, NAN_OUTPUT = 4, LEAK = 5 };

#define LEAK_BYTES (1024 * 1024)

/* Keeps every leaked block reachable: an allocation whose pointer is dropped
 * at once may be removed by the optimizer, and then nothing leaks. */
static void *leaked_blocks = NULL;

/* Never cleared: volatile makes the compiler re-read it, so the loop stays. */
static volatile int hanging = 1;

/* Whether time t has reached fault_time. Step ends are sums of step sizes, so
 * allow for their rounding, as the framework does for communication points. */
static int fault_due(const ModelState *s, double t) {
    return V(fault) != HEALTHY && t >= V(fault_time) - 1e-9 * fmax(1.0, fabs(t));
}

ModelStatus model_initialize(ModelState *s, char *msg, size_t msg_len) {
    if (V(tau) < TAU_MIN) {
        snprintf(msg, msg_len, "tau = %g s is below the stable minimum %g s", V(tau), TAU_MIN);
        return MODEL_ERROR;
    }
    V(y) = V(y_start);
    if (V(fault) == NAN_OUTPUT && fault_due(s, s->time)) V(y) = NAN;
    return MODEL_OK;
}

/* The fault due at time t, if any: an error status, a hang, a crash, NaN written into
 * *nan_into, or (allow_leak) 1 MiB more leaked. MODEL_OK when the run may go on. */
static ModelStatus inject_fault(ModelState *s, double t, double *nan_into, int allow_leak,
                                char *msg, size_t msg_len) {
    if (!fault_due(s, t)) return MODEL_OK;
    switch ((int)V(fault)) {
    case STEP_ERROR:
        snprintf(msg, msg_len, "injected error at t=%g s (fault_time = %g s)", s->time,
                 V(fault_time));
        return MODEL_ERROR;
    case HANG:
        while (hanging) {
        }
        break;
    case CRASH:
        raise(SIGSEGV);
        break;
    case NAN_OUTPUT:
        *nan_into = NAN;
        break;
    case LEAK: {
        if (!allow_leak) break;
        void **block = malloc(LEAK_BYTES);
        if (block == NULL) {
            snprintf(msg, msg_len, "out of memory after leaking as asked");
            return MODEL_ERROR;
        }
        /* Touch every page so the leak shows in the resident set size. */
        memset(block, 0xA5, LEAK_BYTES);
        block[0] = leaked_blocks;
        leaked_blocks = block;
        break;
    }
    }
    return MODEL_OK;
}

ModelStatus model_do_step(ModelState *s, double h, char *msg, size_t msg_len) {
    ModelStatus st = inject_fault(s, s->time + h, &V(y), 1, msg, msg_len);
    if (st != MODEL_OK) return st;
    /* Exact over any h: u and the input d are constant over the step (a NaN y stays NaN). */
    double target = V(u) + V(d);
    V(y) = target + (V(y) - target) * exp(-h / V(tau));
    return MODEL_OK;
}

/* ---- model exchange -------------------------------------------------------------
 * The same lag for an ODE solver, y' = (u + d - y) / tau, with the faults acting
 * in the derivative from fault_time on: an error status, a hang, a crash, and
 * a NaN derivative (the solver then fails); no leak. */

ModelStatus model_derivatives(ModelState *s, char *msg, size_t msg_len) {
    V(der_y) = (V(u) + V(d) - V(y)) / V(tau);
    return inject_fault(s, s->time, &V(der_y), 0, msg, msg_len);
}
