/*
 * asset-twin model framework: what a model's C code sees.
 *
 * A model is a variable table (model.yaml, turned into model_vars.h by the
 * build) plus two functions, model_initialize() and model_do_step(). The
 * framework implements the whole FMI co-simulation API around them: variable
 * access with type and bound checks, modes, logging, reset, and
 * get/set/serialize of the FMU state. framework_core.c does all of that once;
 * fmi2_framework.c (FMI 2.0) or fmi3_framework.c (FMI 3.0) wraps it.
 *
 * All variables live in one array of doubles indexed by value reference, so
 * the complete state of a run is one plain struct that can be copied and
 * serialized with memcpy.
 */
#ifndef ASSET_TWIN_MODEL_H
#define ASSET_TWIN_MODEL_H

#include <stddef.h>

typedef enum { VT_REAL = 0, VT_INTEGER = 1, VT_BOOLEAN = 2 } VarType;

typedef enum {
    CA_PARAMETER = 0,
    CA_CALCULATED_PARAMETER = 1,
    CA_INPUT = 2,
    CA_OUTPUT = 3,
    CA_LOCAL = 4
} Causality;

typedef struct {
    const char *name;
    VarType type;
    Causality causality;
    double start;
    double min; /* -HUGE_VAL when unbounded */
    double max; /* +HUGE_VAL when unbounded */
} VarDef;

/* Same numbers as fmi2Status and fmi3Status, so the framework can pass them through. */
typedef enum {
    MODEL_OK = 0,
    MODEL_WARNING = 1,
    MODEL_DISCARD = 2,
    MODEL_ERROR = 3
} ModelStatus;

#include "model_vars.h" /* generated: MODEL_GUID, N_VARS, VR_* and MODEL_VARS[] */

/* The complete, copyable state of one run. */
typedef struct {
    double time;
    double v[N_VARS];
} ModelState;

/* Variable access by name inside model code: V(spindle_speed). */
#define V(name) (s->v[VR_##name])

/* Called once when initialization ends: check parameter combinations, compute
 * calculated parameters, initial states and outputs. On failure, write a
 * message naming the variables into msg and return MODEL_ERROR. */
ModelStatus model_initialize(ModelState *s, char *msg, size_t msg_len);

/* Advance the run from s->time by h > 0 (the framework updates s->time). */
ModelStatus model_do_step(ModelState *s, double h, char *msg, size_t msg_len);

#ifdef MODEL_EXCHANGE
/* Model exchange (a table with a model_exchange section; FMI 2.0 or 3.0). The
 * solver owns the continuous states (STATE_VRS, written straight into s->v)
 * and the time; the model computes the rest from them:
 *
 * model_derivatives: the derivative variables (DERIVATIVE_VRS) and any other
 *   variable that depends on the states, at s->time. Called before every read
 *   after the solver moved the states or the time.
 * Only a table with event indicators (N_EVENT_INDICATORS > 0) provides these two:
 * model_event_indicators: z[0..N_EVENT_INDICATORS); an event happens where
 *   one of them changes sign.
 * model_event_update: at an event (and once after initialization), switch
 *   discrete variables and, if it must, reset states; set *states_changed when
 *   it wrote a state, so the solver restarts from the new values.
 *
 * model_do_step still serves the co-simulation interface of the same FMU. */
ModelStatus model_derivatives(ModelState *s, char *msg, size_t msg_len);
#if N_EVENT_INDICATORS > 0
void model_event_indicators(const ModelState *s, double z[]);
ModelStatus model_event_update(ModelState *s, int *states_changed, char *msg, size_t msg_len);
#endif
#endif

#endif
