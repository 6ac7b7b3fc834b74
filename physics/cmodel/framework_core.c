/*
 * asset-twin model framework: the FMI-version-independent core (see
 * framework_core.h).
 */
#include "framework_core.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A saved FMU state: the run's state and the mode it was taken in. */
typedef struct {
    ModelState s;
    Mode mode;
} SavedState;

/* Serialized layout: magic, size of SavedState, GUID (the FMI 3.0
 * instantiation token), then SavedState. */
#define GUID_FIELD 64
typedef struct {
    char magic[8];
    unsigned long long state_size;
    char guid[GUID_FIELD];
} StateHeader;

#define SERIALIZED_SIZE (sizeof(StateHeader) + sizeof(SavedState))

/* ---- instance ------------------------------------------------------------- */

void core_init(Core *c, CoreLogger log, CoreCheckVr check_vr, int logging_on) {
    c->log = log;
    c->check_vr = check_vr;
    c->logging_on = logging_on ? 1 : 0;
    core_reset(c);
}

void core_reset(Core *c) {
    memset(&c->s, 0, sizeof c->s);
    for (int i = 0; i < N_VARS; i++) c->s.v[i] = MODEL_VARS[i].start;
    c->s.time = 0.0;
    c->mode = MODE_INSTANTIATED;
    c->stop_time_defined = 0;
    c->stop_time = 0.0;
    c->dirty = 1;
}

/* ---- logging ----------------------------------------------------------------- */

void core_log(const Core *c, ModelStatus status, const char *category, const char *fmt, ...) {
    if (c == NULL || c->log == NULL) return;
    if (status == MODEL_OK && !c->logging_on) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    c->log(c, status, category, buf);
}

ModelStatus core_fail(const Core *c, const char *function, const char *fmt, ...) {
    char buf[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    core_log(c, MODEL_ERROR, "logStatusError", "%s: %s", function, buf);
    return MODEL_ERROR;
}

/* ---- modes and stepping ------------------------------------------------------ */

ModelStatus core_exit_initialization(Core *c, const char *function, Mode next) {
    char msg[800] = "";
    ModelStatus st = model_initialize(&c->s, msg, sizeof msg);
    if (st >= MODEL_DISCARD) {
        c->mode = MODE_ERROR;
        return core_fail(c, function, "%s", msg[0] ? msg : "model_initialize failed");
    }
    if (st == MODEL_WARNING)
        core_log(c, MODEL_WARNING, "logStatusWarning", "%s: %s", function, msg);
    c->mode = next;
    c->dirty = 1;
    return st;
}

ModelStatus core_do_step(Core *c, const char *function, double t, double h) {
    if (!(h > 0.0)) return core_fail(c, function, "step size %g must be > 0", h);
    double tol = 1e-9 * fmax(1.0, fabs(t));
    if (fabs(t - c->s.time) > tol)
        return core_fail(c, function,
                         "communication point %.17g does not match the model time %.17g", t,
                         c->s.time);
    if (c->stop_time_defined && t + h > c->stop_time + 1e-9 * fmax(1.0, fabs(c->stop_time)))
        return core_fail(c, function, "step to %g goes past the stop time %g", t + h, c->stop_time);
    char msg[800] = "";
    ModelStatus st = model_do_step(&c->s, h, msg, sizeof msg);
    /* Step from the caller's time so rounding never accumulates. */
    c->s.time = t + h;
    if (st >= MODEL_DISCARD) {
        if (st == MODEL_ERROR) c->mode = MODE_ERROR;
        core_log(c, st, "logStatusError", "%s at t=%g: %s", function, t,
                 msg[0] ? msg : "model_do_step failed");
    } else if (st == MODEL_WARNING) {
        core_log(c, MODEL_WARNING, "logStatusWarning", "%s at t=%g: %s", function, t, msg);
    }
    return st;
}

/* ---- variable access ------------------------------------------------------------ */

static ModelStatus check_settable(const Core *c, const char *function, unsigned int vr,
                                  double value) {
    const VarDef *d = &MODEL_VARS[vr];
    if (c->mode == MODE_TERMINATED || c->mode == MODE_ERROR)
        return core_fail(c, function, "cannot set %s after termination or an error", d->name);
    if (d->causality == CA_PARAMETER) {
        if (c->mode == MODE_STEP || c->mode == MODE_EVENT)
            return core_fail(c, function,
                             "%s is a fixed parameter; set it before initialization ends", d->name);
    } else if (d->causality != CA_INPUT) {
        return core_fail(c, function, "%s is not a parameter or input and cannot be set", d->name);
    }
    if (isnan(value)) return core_fail(c, function, "%s = NaN is not a number", d->name);
    if (value < d->min || value > d->max)
        return core_fail(c, function, "%s = %g is outside its range [%g, %g]", d->name, value,
                         d->min, d->max);
    return MODEL_OK;
}

ModelStatus core_get(const Core *c, const char *function, int type, const unsigned int vr[],
                     size_t n, void *values, CoreStore store) {
    if (c == NULL) return MODEL_ERROR;
    if (n > 0 && (vr == NULL || values == NULL)) return MODEL_ERROR;
    for (size_t i = 0; i < n; i++) {
        if (c->check_vr(c, function, vr[i], type, 0) != MODEL_OK) return MODEL_ERROR;
        store(values, i, c->s.v[vr[i]]);
    }
    return MODEL_OK;
}

ModelStatus core_set(Core *c, const char *function, int type, const unsigned int vr[], size_t n,
                     const void *values, CoreLoad load) {
    if (c == NULL) return MODEL_ERROR;
    if (n > 0 && (vr == NULL || values == NULL)) return MODEL_ERROR;
    /* Check everything first so a refused call changes nothing. */
    for (size_t i = 0; i < n; i++) {
        if (c->check_vr(c, function, vr[i], type, 1) != MODEL_OK ||
            check_settable(c, function, vr[i], load(values, i)) != MODEL_OK)
            return MODEL_ERROR;
    }
    for (size_t i = 0; i < n; i++) c->s.v[vr[i]] = load(values, i);
    c->dirty = 1;
    return MODEL_OK;
}

/* ---- model exchange ---------------------------------------------------------------- */

#ifndef MODEL_EXCHANGE

ModelStatus core_refresh(Core *c, const char *function) {
    (void)function;
    return c == NULL ? MODEL_ERROR : MODEL_OK;
}

#else

ModelStatus core_refresh(Core *c, const char *function) {
    if (c == NULL) return MODEL_ERROR;
    if (!c->model_exchange || !c->dirty) return MODEL_OK;
    if (c->mode != MODE_EVENT && c->mode != MODE_CONTINUOUS) return MODEL_OK;
    char msg[800] = "";
    ModelStatus st = model_derivatives(&c->s, msg, sizeof msg);
    if (st >= MODEL_DISCARD) {
        c->mode = MODE_ERROR;
        return core_fail(c, function, "at t=%g: %s", c->s.time,
                         msg[0] ? msg : "model_derivatives failed");
    }
    c->dirty = 0;
    return MODEL_OK;
}

ModelStatus core_me_check(const Core *c, const char *function, Mode a, Mode b) {
    if (c == NULL) return MODEL_ERROR;
    if (!c->model_exchange)
        return core_fail(c, function, "this instance was instantiated for co-simulation");
    if (c->mode != a && c->mode != b) {
        static const char *const names[] = {"instantiated", "initialization", "continuous-time",
                                            "terminated",   "error",          "event"};
        return core_fail(c, function, "not allowed in %s mode", names[c->mode]);
    }
    return MODEL_OK;
}

ModelStatus core_event_update(Core *c, const char *function, int *states_changed) {
    if (core_me_check(c, function, MODE_EVENT, MODE_EVENT) != MODEL_OK) return MODEL_ERROR;
    char msg[800] = "";
    *states_changed = 0;
#if N_EVENT_INDICATORS > 0
    ModelStatus st = model_event_update(&c->s, states_changed, msg, sizeof msg);
#else
    ModelStatus st = MODEL_OK; /* no indicators: nothing happens at an event */
#endif
    c->dirty = 1;
    if (st >= MODEL_DISCARD) {
        c->mode = MODE_ERROR;
        return core_fail(c, function, "at t=%g: %s", c->s.time,
                         msg[0] ? msg : "model_event_update failed");
    }
    return st;
}

void core_set_time(Core *c, double t) {
    c->s.time = t;
    c->dirty = 1;
}

static ModelStatus check_count(const Core *c, const char *function, size_t n, size_t expected,
                               const char *what, const void *array) {
    if (n != expected)
        return core_fail(c, function, "%zu %s asked for; this model has %zu", n, what, expected);
    if (n > 0 && array == NULL) return core_fail(c, function, "the %s array is NULL", what);
    return MODEL_OK;
}

/* The modes the state and derivative functions are called in. */
#define CHECK_ME(c, function, n, expected, what, array)                                       \
    do {                                                                                     \
        if (core_me_check(c, function, MODE_CONTINUOUS, MODE_EVENT) != MODEL_OK ||           \
            check_count(c, function, n, expected, what, array) != MODEL_OK)                   \
            return MODEL_ERROR;                                                              \
    } while (0)

ModelStatus core_set_states(Core *c, const char *function, const double x[], size_t n) {
    CHECK_ME(c, function, n, N_STATES, "states", x);
    for (size_t i = 0; i < n; i++) c->s.v[STATE_VRS[i]] = x[i];
    c->dirty = 1;
    return MODEL_OK;
}

ModelStatus core_get_states(const Core *c, const char *function, double x[], size_t n) {
    CHECK_ME(c, function, n, N_STATES, "states", x);
    for (size_t i = 0; i < n; i++) x[i] = c->s.v[STATE_VRS[i]];
    return MODEL_OK;
}

ModelStatus core_get_nominals(const Core *c, const char *function, double x[], size_t n) {
    if (c == NULL) return MODEL_ERROR;
    if (check_count(c, function, n, N_STATES, "states", x) != MODEL_OK) return MODEL_ERROR;
    for (size_t i = 0; i < n; i++) x[i] = 1.0;
    return MODEL_OK;
}

ModelStatus core_get_derivatives(Core *c, const char *function, double dx[], size_t n) {
    CHECK_ME(c, function, n, N_STATES, "derivatives", dx);
    if (core_refresh(c, function) != MODEL_OK) return MODEL_ERROR;
    for (size_t i = 0; i < n; i++) dx[i] = c->s.v[DERIVATIVE_VRS[i]];
    return MODEL_OK;
}

ModelStatus core_get_event_indicators(Core *c, const char *function, double z[], size_t n) {
    CHECK_ME(c, function, n, N_EVENT_INDICATORS, "event indicators", z);
#if N_EVENT_INDICATORS > 0
    if (core_refresh(c, function) != MODEL_OK) return MODEL_ERROR;
    model_event_indicators(&c->s, z);
#endif
    return MODEL_OK;
}

#endif

/* ---- FMU state ------------------------------------------------------------------ */

ModelStatus core_get_state(const Core *c, const char *function, void **state) {
    if (c == NULL || state == NULL) return MODEL_ERROR;
    SavedState *saved = (SavedState *)(*state);
    if (saved == NULL) {
        saved = (SavedState *)malloc(sizeof(SavedState));
        if (saved == NULL) return core_fail(c, function, "out of memory");
    }
    saved->s = c->s;
    saved->mode = c->mode;
    *state = saved;
    return MODEL_OK;
}

ModelStatus core_set_state(Core *c, const char *function, const void *state) {
    if (c == NULL) return MODEL_ERROR;
    if (state == NULL) return core_fail(c, function, "state is NULL");
    const SavedState *saved = (const SavedState *)state;
    c->s = saved->s;
    c->mode = saved->mode;
    c->dirty = 1;
    return MODEL_OK;
}

void core_free_state(void **state) {
    if (state == NULL) return;
    free(*state);
    *state = NULL;
}

ModelStatus core_serialized_state_size(size_t *size) {
    if (size == NULL) return MODEL_ERROR;
    *size = SERIALIZED_SIZE;
    return MODEL_OK;
}

ModelStatus core_serialize_state(const Core *c, const char *function, const StateFormat *format,
                                 const void *state, void *bytes, size_t size) {
    if (size < SERIALIZED_SIZE)
        return core_fail(c, function, "buffer of %zu bytes is too small, need %zu", size,
                         SERIALIZED_SIZE);
    StateHeader h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, format->magic, sizeof h.magic);
    h.state_size = sizeof(SavedState);
    strncpy(h.guid, MODEL_GUID, GUID_FIELD - 1);
    memcpy(bytes, &h, sizeof h);
    memcpy((unsigned char *)bytes + sizeof h, state, sizeof(SavedState));
    return MODEL_OK;
}

ModelStatus core_deserialize_state(const Core *c, const char *function,
                                   const StateFormat *format, const void *bytes, size_t size,
                                   void **state) {
    StateHeader h;
    if (size != SERIALIZED_SIZE)
        return core_fail(c, function, "%zu bytes given, a %s state has %zu", size, MODEL_NAME,
                         SERIALIZED_SIZE);
    memcpy(&h, bytes, sizeof h);
    if (memcmp(h.magic, format->magic, sizeof h.magic) != 0 || h.state_size != sizeof(SavedState))
        return core_fail(c, function, "not a serialized %s%s state", format->label, MODEL_NAME);
    /* The bytes are the caller's: the GUID field need not end in a NUL. */
    if (strncmp(h.guid, MODEL_GUID, GUID_FIELD) != 0)
        return core_fail(c, function, "state of model %.*s, not of this model %s", GUID_FIELD,
                         h.guid, MODEL_GUID);
    SavedState *saved = (SavedState *)(*state);
    if (saved == NULL) {
        saved = (SavedState *)malloc(sizeof(SavedState));
        if (saved == NULL) return core_fail(c, function, "out of memory");
    }
    memcpy(saved, (const unsigned char *)bytes + sizeof h, sizeof(SavedState));
    *state = saved;
    return MODEL_OK;
}
