/*
 * Test FMU: a static map with a narrow Gaussian peak (see model.yaml).
 */
#include <math.h>
#include <stddef.h>

#include "model.h"

static void update(ModelState *s) {
    double d1 = V(x1) - V(c1), d2 = V(x2) - V(c2), w = V(width);
    V(y) = V(slope) * V(x1) + V(height) * exp(-(d1 * d1 + d2 * d2) / (2.0 * w * w));
}

ModelStatus model_initialize(ModelState *s, char *msg, size_t msg_len) {
    (void)msg;
    (void)msg_len;
    update(s);
    return MODEL_OK;
}

ModelStatus model_do_step(ModelState *s, double h, char *msg, size_t msg_len) {
    (void)h;
    (void)msg;
    (void)msg_len;
    update(s);
    return MODEL_OK;
}
