/*
 * asset-twin model framework: the part of an FMU that does not depend on the
 * FMI version. fmi2_framework.c and fmi3_framework.c are thin wrappers around
 * it that translate FMI types and statuses; both ship this file with them.
 *
 * The core owns one run (its ModelState, mode and stop time), checks every
 * write before it makes any (a refused call changes nothing), runs
 * model_initialize() and model_do_step(), saves and serializes FMU states,
 * and formats every message. It reaches the FMI version only through two
 * hooks the wrapper sets: one hands a finished message to the FMI logger, the
 * other checks that a value reference names a variable of the accessed type
 * (the two versions number and name their types differently).
 *
 * Function names in messages ("fmi2DoStep") come from the wrapper, so each
 * message reads exactly as the FMI function that the caller called.
 */
#ifndef ASSET_TWIN_FRAMEWORK_CORE_H
#define ASSET_TWIN_FRAMEWORK_CORE_H

#include <stddef.h>

#include "model.h"

#if defined(__GNUC__) || defined(__clang__)
#define CORE_PRINTF(fmt_index, first_arg) __attribute__((format(printf, fmt_index, first_arg)))
#else
#define CORE_PRINTF(fmt_index, first_arg)
#endif

/* Saved FMU states carry the mode as this number. MODE_EVENT, which only FMI
 * 3.0 enters, comes last so that FMI 2.0 states keep the numbers they had
 * before the core existed; FMI 3.0 states changed theirs, and their magic. */
typedef enum {
    MODE_INSTANTIATED = 0,
    MODE_INITIALIZATION = 1,
    MODE_STEP = 2,
    MODE_TERMINATED = 3,
    MODE_ERROR = 4,
    MODE_EVENT = 5
} Mode;

typedef struct Core Core;

/* Hands a formatted message to the FMI version's logger. */
typedef void (*CoreLogger)(const Core *core, ModelStatus status, const char *category,
                           const char *message);

/* MODEL_OK when vr names a variable of the wrapper's type code `type`, else
 * core_fail() naming `function`. `writing` tells a set from a get. */
typedef ModelStatus (*CoreCheckVr)(const Core *core, const char *function, unsigned int vr,
                                   int type, int writing);

/* A wrapper's Instance starts with a Core, so an FMI instance pointer is also
 * a Core pointer and the hooks can cast back to the wrapper's Instance. */
struct Core {
    ModelState s;
    Mode mode;
    int logging_on;
    int stop_time_defined;
    double stop_time;
    CoreLogger log;
    CoreCheckVr check_vr;
    int model_exchange; /* instantiated for model exchange (MODEL_EXCHANGE builds) */
    int dirty;          /* model exchange: states, time or inputs moved since model_derivatives */
};

/* Model exchange's continuous-time mode: the core's step mode stands for it, so
 * parameters are fixed there and in event mode, as for co-simulation. */
#define MODE_CONTINUOUS MODE_STEP

/* How one FMI version marks its serialized states. */
typedef struct {
    const char *magic; /* exactly 8 characters, stored without a terminator */
    const char *label; /* in "not a serialized <label><model> state" */
} StateFormat;

/* ---- instance ------------------------------------------------------------- */

/* Hooks and logging set, every variable at its start value. */
void core_init(Core *c, CoreLogger log, CoreCheckVr check_vr, int logging_on);

/* Start values, time 0, no stop time, MODE_INSTANTIATED. */
void core_reset(Core *c);

/* ---- logging ----------------------------------------------------------------- */

/* Logs when a logger is set, and MODEL_OK messages only with logging on. */
void core_log(const Core *c, ModelStatus status, const char *category, const char *fmt, ...)
    CORE_PRINTF(4, 5);

/* Logs "<function>: <message>" as an error and returns MODEL_ERROR; c may be NULL. */
ModelStatus core_fail(const Core *c, const char *function, const char *fmt, ...) CORE_PRINTF(3, 4);

/* ---- modes and stepping ------------------------------------------------------ */

/* Runs model_initialize() and moves on to `next` (MODE_ERROR when it fails). */
ModelStatus core_exit_initialization(Core *c, const char *function, Mode next);

/* One step of h from t, the caller having checked that c is in step mode. */
ModelStatus core_do_step(Core *c, const char *function, double t, double h);

/* ---- variable access ------------------------------------------------------------ */

/* values[i] of the wrapper's array, as a double; and back. */
typedef double (*CoreLoad)(const void *values, size_t i);
typedef void (*CoreStore)(void *values, size_t i, double x);

/* Reads vr[0..n) into values; stops at the first refused value reference. */
ModelStatus core_get(const Core *c, const char *function, int type, const unsigned int vr[],
                     size_t n, void *values, CoreStore store);

/* Writes values into vr[0..n) only once every one of them passed its checks:
 * type, settable in this mode, not NaN, within [min, max]. */
ModelStatus core_set(Core *c, const char *function, int type, const unsigned int vr[], size_t n,
                     const void *values, CoreLoad load);

/* ---- model exchange ---------------------------------------------------------------- */

/* Before a read: model_derivatives() when the states, the time or an input moved
 * since it last ran (model exchange in event or continuous-time mode); a no-op for
 * co-simulation instances and for builds without MODEL_EXCHANGE. */
ModelStatus core_refresh(Core *c, const char *function);

#ifdef MODEL_EXCHANGE
/* MODEL_OK when c is a model-exchange instance in mode a or b, else core_fail(). */
ModelStatus core_me_check(const Core *c, const char *function, Mode a, Mode b);

/* model_event_update() in event mode; *states_changed when it wrote a state. */
ModelStatus core_event_update(Core *c, const char *function, int *states_changed);

void core_set_time(Core *c, double t);

/* The continuous states (STATE_VRS order), their nominals (1), their derivatives
 * (DERIVATIVE_VRS) and the event indicators: n must be the model's count. */
ModelStatus core_set_states(Core *c, const char *function, const double x[], size_t n);
ModelStatus core_get_states(const Core *c, const char *function, double x[], size_t n);
ModelStatus core_get_nominals(const Core *c, const char *function, double x[], size_t n);
ModelStatus core_get_derivatives(Core *c, const char *function, double dx[], size_t n);
ModelStatus core_get_event_indicators(Core *c, const char *function, double z[], size_t n);
#endif

/* ---- FMU state ------------------------------------------------------------------ */

/* Saves the run into *state, allocating it when *state is NULL. */
ModelStatus core_get_state(const Core *c, const char *function, void **state);

/* Puts the run back as it was saved. */
ModelStatus core_set_state(Core *c, const char *function, const void *state);

void core_free_state(void **state);

/* The size of every serialized state of this model, into *size. */
ModelStatus core_serialized_state_size(size_t *size);

/* state and bytes are not NULL; the instance c may be. */
ModelStatus core_serialize_state(const Core *c, const char *function, const StateFormat *format,
                                 const void *state, void *bytes, size_t size);

/* Reads back what core_serialize_state() wrote for this model and FMI version
 * into *state, allocating it when *state is NULL. bytes and state are not NULL. */
ModelStatus core_deserialize_state(const Core *c, const char *function,
                                   const StateFormat *format, const void *bytes, size_t size,
                                   void **state);

#endif
