/*
 * asset-twin model framework: the FMI 3.0 co-simulation API around a model
 * written against model.h. The same models as fmi2_framework.c, the same rules:
 * type and bound checks where a refused call changes nothing, fixed parameters
 * refused once initialization has ended, model_initialize() when it ends and
 * model_do_step() per step.
 *
 * Types: VT_REAL is Float64, VT_INTEGER is Int32, except Enumerations, which
 * FMI 3.0 reads and sets as Int64 (MODEL_VAR_IS_ENUMERATION, generated), and
 * VT_BOOLEAN is Boolean. Value references are the table's; the independent
 * variable time that FMI 3.0 requires has the next one, N_VARS.
 *
 * Event mode is supported because it is trivial here: these models have no
 * events, so fmi3UpdateDiscreteStates has nothing to update. Everything else
 * (model exchange, scheduled execution, clocks, other types, derivatives)
 * returns fmi3Error with a message naming the function.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fmi3Functions.h"
#include "model.h"
#include "model_vars_fmi3.h" /* generated: MODEL_VAR_IS_ENUMERATION[N_VARS] */

#define VR_TIME ((fmi3ValueReference)N_VARS)

typedef enum {
    MODE_INSTANTIATED,
    MODE_INITIALIZATION,
    MODE_EVENT,
    MODE_STEP,
    MODE_TERMINATED,
    MODE_ERROR
} Mode;

typedef struct {
    ModelState s;
    Mode mode;
    int logging_on;
    int event_mode_used;
    fmi3LogMessageCallback logger;
    fmi3InstanceEnvironment env;
    fmi3Float64 stop_time;
    fmi3Boolean stop_time_defined;
} Instance;

/* A saved FMU state: the run's state and the mode it was taken in. */
typedef struct {
    ModelState s;
    Mode mode;
} SavedState;

/* Serialized layout: magic, size of SavedState, instantiation token, SavedState. */
#define STATE_MAGIC "ATWIN3S1"
#define TOKEN_FIELD 64
typedef struct {
    char magic[8];
    unsigned long long state_size;
    char token[TOKEN_FIELD];
} StateHeader;

/* The FMI 3.0 access types of this framework. */
typedef enum { K_FLOAT64, K_INT32, K_INT64, K_BOOLEAN } Kind;
static const char *const KIND_NAMES[] = {"Float64", "Int32", "Int64 (Enumeration)", "Boolean"};

static Kind kind_of(fmi3ValueReference vr) {
    switch (MODEL_VARS[vr].type) {
    case VT_REAL: return K_FLOAT64;
    case VT_BOOLEAN: return K_BOOLEAN;
    default: return MODEL_VAR_IS_ENUMERATION[vr] ? K_INT64 : K_INT32;
    }
}

static void log_message(const Instance *inst, fmi3Status status, const char *category,
                        const char *fmt, ...) {
    if (inst == NULL || inst->logger == NULL) return;
    if (status == fmi3OK && !inst->logging_on) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    /* FMI 3.0 messages are plain text, not printf formats. */
    inst->logger(inst->env, status, category, buf);
}

static fmi3Status fail(Instance *inst, const char *function, const char *fmt, ...) {
    char buf[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    log_message(inst, fmi3Error, "logStatusError", "%s: %s", function, buf);
    return fmi3Error;
}

static fmi3Status not_supported(fmi3Instance instance, const char *function) {
    Instance *inst = (Instance *)instance;
    log_message(inst, fmi3Error, "logStatusError", "%s: not supported", function);
    return fmi3Error;
}

static void reset_to_start(Instance *inst) {
    memset(&inst->s, 0, sizeof inst->s);
    for (int i = 0; i < N_VARS; i++) inst->s.v[i] = MODEL_VARS[i].start;
    inst->s.time = 0.0;
    inst->mode = MODE_INSTANTIATED;
    inst->stop_time_defined = fmi3False;
    inst->stop_time = 0.0;
}

/* ---- common functions -------------------------------------------------- */

const char *fmi3GetVersion(void) { return fmi3Version; }

fmi3Status fmi3SetDebugLogging(fmi3Instance instance, fmi3Boolean loggingOn, size_t nCategories,
                               const fmi3String categories[]) {
    (void)nCategories;
    (void)categories;
    if (instance == NULL) return fmi3Error;
    ((Instance *)instance)->logging_on = loggingOn ? 1 : 0;
    return fmi3OK;
}

fmi3Instance fmi3InstantiateCoSimulation(
    fmi3String instanceName, fmi3String instantiationToken, fmi3String resourcePath,
    fmi3Boolean visible, fmi3Boolean loggingOn, fmi3Boolean eventModeUsed,
    fmi3Boolean earlyReturnAllowed, const fmi3ValueReference requiredIntermediateVariables[],
    size_t nRequiredIntermediateVariables, fmi3InstanceEnvironment instanceEnvironment,
    fmi3LogMessageCallback logMessage, fmi3IntermediateUpdateCallback intermediateUpdate) {
    (void)instanceName;
    (void)resourcePath;
    (void)visible;
    (void)earlyReturnAllowed; /* never returns early: steps are exact */
    (void)requiredIntermediateVariables;
    (void)intermediateUpdate;
    Instance probe = {0};
    probe.logger = logMessage;
    probe.env = instanceEnvironment;
    if (instantiationToken == NULL || strcmp(instantiationToken, MODEL_GUID) != 0) {
        fail(&probe, "fmi3InstantiateCoSimulation",
             "instantiation token %s does not match this binary's %s",
             instantiationToken ? instantiationToken : "(null)", MODEL_GUID);
        return NULL;
    }
    if (nRequiredIntermediateVariables > 0) {
        fail(&probe, "fmi3InstantiateCoSimulation",
             "%s has no intermediate-update variables, %zu requested", MODEL_NAME,
             nRequiredIntermediateVariables);
        return NULL;
    }
    Instance *inst = (Instance *)calloc(1, sizeof(Instance));
    if (inst == NULL) return NULL;
    inst->logger = logMessage;
    inst->env = instanceEnvironment;
    inst->logging_on = loggingOn ? 1 : 0;
    inst->event_mode_used = eventModeUsed ? 1 : 0;
    reset_to_start(inst);
    return inst;
}

fmi3Instance fmi3InstantiateModelExchange(fmi3String instanceName,
                                          fmi3String instantiationToken,
                                          fmi3String resourcePath, fmi3Boolean visible,
                                          fmi3Boolean loggingOn,
                                          fmi3InstanceEnvironment instanceEnvironment,
                                          fmi3LogMessageCallback logMessage) {
    (void)instanceName; (void)instantiationToken; (void)resourcePath; (void)visible;
    (void)loggingOn;
    if (logMessage)
        logMessage(instanceEnvironment, fmi3Error, "logStatusError",
                   "fmi3InstantiateModelExchange: not supported (co-simulation only)");
    return NULL;
}

fmi3Instance fmi3InstantiateScheduledExecution(
    fmi3String instanceName, fmi3String instantiationToken, fmi3String resourcePath,
    fmi3Boolean visible, fmi3Boolean loggingOn, fmi3InstanceEnvironment instanceEnvironment,
    fmi3LogMessageCallback logMessage, fmi3ClockUpdateCallback clockUpdate,
    fmi3LockPreemptionCallback lockPreemption, fmi3UnlockPreemptionCallback unlockPreemption) {
    (void)instanceName; (void)instantiationToken; (void)resourcePath; (void)visible;
    (void)loggingOn; (void)clockUpdate; (void)lockPreemption; (void)unlockPreemption;
    if (logMessage)
        logMessage(instanceEnvironment, fmi3Error, "logStatusError",
                   "fmi3InstantiateScheduledExecution: not supported (co-simulation only)");
    return NULL;
}

void fmi3FreeInstance(fmi3Instance instance) { free(instance); }

fmi3Status fmi3EnterInitializationMode(fmi3Instance instance, fmi3Boolean toleranceDefined,
                                       fmi3Float64 tolerance, fmi3Float64 startTime,
                                       fmi3Boolean stopTimeDefined, fmi3Float64 stopTime) {
    (void)toleranceDefined;
    (void)tolerance; /* steps are exact or the model's own business */
    Instance *inst = (Instance *)instance;
    if (inst == NULL) return fmi3Error;
    if (inst->mode != MODE_INSTANTIATED)
        return fail(inst, "fmi3EnterInitializationMode", "only allowed after instantiation or reset");
    if (stopTimeDefined && stopTime < startTime)
        return fail(inst, "fmi3EnterInitializationMode", "stop time %g is before the start time %g",
                    stopTime, startTime);
    inst->s.time = startTime;
    inst->stop_time_defined = stopTimeDefined;
    inst->stop_time = stopTime;
    inst->mode = MODE_INITIALIZATION;
    return fmi3OK;
}

fmi3Status fmi3ExitInitializationMode(fmi3Instance instance) {
    Instance *inst = (Instance *)instance;
    if (inst == NULL) return fmi3Error;
    if (inst->mode != MODE_INITIALIZATION)
        return fail(inst, "fmi3ExitInitializationMode", "not in initialization mode");
    char msg[800] = "";
    ModelStatus st = model_initialize(&inst->s, msg, sizeof msg);
    if (st >= MODEL_DISCARD) {
        inst->mode = MODE_ERROR;
        return fail(inst, "fmi3ExitInitializationMode", "%s",
                    msg[0] ? msg : "model_initialize failed");
    }
    if (st == MODEL_WARNING)
        log_message(inst, fmi3Warning, "logStatusWarning", "fmi3ExitInitializationMode: %s", msg);
    inst->mode = inst->event_mode_used ? MODE_EVENT : MODE_STEP;
    return (fmi3Status)st;
}

fmi3Status fmi3EnterEventMode(fmi3Instance instance) {
    Instance *inst = (Instance *)instance;
    if (inst == NULL) return fmi3Error;
    if (!inst->event_mode_used)
        return fail(inst, "fmi3EnterEventMode", "instantiated with eventModeUsed = false");
    if (inst->mode != MODE_STEP) return fail(inst, "fmi3EnterEventMode", "not in step mode");
    inst->mode = MODE_EVENT;
    return fmi3OK;
}

fmi3Status fmi3UpdateDiscreteStates(fmi3Instance instance, fmi3Boolean *discreteStatesNeedUpdate,
                                    fmi3Boolean *terminateSimulation,
                                    fmi3Boolean *nominalsOfContinuousStatesChanged,
                                    fmi3Boolean *valuesOfContinuousStatesChanged,
                                    fmi3Boolean *nextEventTimeDefined,
                                    fmi3Float64 *nextEventTime) {
    Instance *inst = (Instance *)instance;
    if (inst == NULL) return fmi3Error;
    if (inst->mode != MODE_EVENT) return fail(inst, "fmi3UpdateDiscreteStates", "not in event mode");
    /* No discrete states and no time events: nothing to update, ever. */
    if (discreteStatesNeedUpdate) *discreteStatesNeedUpdate = fmi3False;
    if (terminateSimulation) *terminateSimulation = fmi3False;
    if (nominalsOfContinuousStatesChanged) *nominalsOfContinuousStatesChanged = fmi3False;
    if (valuesOfContinuousStatesChanged) *valuesOfContinuousStatesChanged = fmi3False;
    if (nextEventTimeDefined) *nextEventTimeDefined = fmi3False;
    if (nextEventTime) *nextEventTime = 0.0;
    return fmi3OK;
}

fmi3Status fmi3EnterStepMode(fmi3Instance instance) {
    Instance *inst = (Instance *)instance;
    if (inst == NULL) return fmi3Error;
    if (inst->mode != MODE_EVENT) return fail(inst, "fmi3EnterStepMode", "not in event mode");
    inst->mode = MODE_STEP;
    return fmi3OK;
}

fmi3Status fmi3Terminate(fmi3Instance instance) {
    Instance *inst = (Instance *)instance;
    if (inst == NULL) return fmi3Error;
    inst->mode = MODE_TERMINATED;
    return fmi3OK;
}

fmi3Status fmi3Reset(fmi3Instance instance) {
    Instance *inst = (Instance *)instance;
    if (inst == NULL) return fmi3Error;
    reset_to_start(inst);
    return fmi3OK;
}

/* ---- variable access ------------------------------------------------------ */

static fmi3Status check_vr(Instance *inst, const char *function, fmi3ValueReference vr,
                           Kind kind) {
    /* Float64 access to time never gets here: the Float64 functions handle it. */
    if (vr == VR_TIME)
        return fail(inst, function, "time (value reference %u) is of type Float64, not %s",
                    (unsigned)vr, KIND_NAMES[kind]);
    if (vr > VR_TIME)
        return fail(inst, function, "value reference %u does not exist (this model has 0 to %u)",
                    (unsigned)vr, (unsigned)VR_TIME);
    if (kind_of(vr) != kind)
        return fail(inst, function, "variable %s (value reference %u) is of type %s, not %s",
                    MODEL_VARS[vr].name, (unsigned)vr, KIND_NAMES[kind_of(vr)], KIND_NAMES[kind]);
    return fmi3OK;
}

static fmi3Status check_settable(Instance *inst, const char *function, fmi3ValueReference vr,
                                 double value) {
    const VarDef *d = &MODEL_VARS[vr];
    if (inst->mode == MODE_TERMINATED || inst->mode == MODE_ERROR)
        return fail(inst, function, "cannot set %s after termination or an error", d->name);
    if (d->causality == CA_PARAMETER) {
        if (inst->mode == MODE_STEP || inst->mode == MODE_EVENT)
            return fail(inst, function, "%s is a fixed parameter; set it before initialization ends",
                        d->name);
    } else if (d->causality != CA_INPUT) {
        return fail(inst, function, "%s is not a parameter or input and cannot be set", d->name);
    }
    if (isnan(value)) return fail(inst, function, "%s = NaN is not a number", d->name);
    if (value < d->min || value > d->max)
        return fail(inst, function, "%s = %g is outside its range [%g, %g]", d->name, value, d->min,
                    d->max);
    return fmi3OK;
}

/* Every variable here is a scalar: one value per value reference. */
static fmi3Status check_counts(Instance *inst, const char *function, size_t nvr, size_t nValues) {
    if (nValues != nvr)
        return fail(inst, function, "%zu values for %zu value references (all variables are scalars)",
                    nValues, nvr);
    return fmi3OK;
}

#define ARGS_OK(inst, vr, nvr, values) \
    ((inst) != NULL && ((nvr) == 0 || ((vr) != NULL && (values) != NULL)))

fmi3Status fmi3GetFloat64(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                          size_t nValueReferences, fmi3Float64 values[], size_t nValues) {
    Instance *inst = (Instance *)instance;
    if (!ARGS_OK(inst, valueReferences, nValueReferences, values)) return fmi3Error;
    if (check_counts(inst, "fmi3GetFloat64", nValueReferences, nValues) != fmi3OK) return fmi3Error;
    for (size_t i = 0; i < nValueReferences; i++) {
        if (valueReferences[i] == VR_TIME) {
            values[i] = inst->s.time;
            continue;
        }
        if (check_vr(inst, "fmi3GetFloat64", valueReferences[i], K_FLOAT64) != fmi3OK)
            return fmi3Error;
        values[i] = inst->s.v[valueReferences[i]];
    }
    return fmi3OK;
}

fmi3Status fmi3SetFloat64(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                          size_t nValueReferences, const fmi3Float64 values[], size_t nValues) {
    Instance *inst = (Instance *)instance;
    if (!ARGS_OK(inst, valueReferences, nValueReferences, values)) return fmi3Error;
    if (check_counts(inst, "fmi3SetFloat64", nValueReferences, nValues) != fmi3OK) return fmi3Error;
    /* Check everything first so a refused call changes nothing. */
    for (size_t i = 0; i < nValueReferences; i++) {
        if (valueReferences[i] == VR_TIME)
            return fail(inst, "fmi3SetFloat64", "time (value reference %u) is the independent "
                        "variable and cannot be set", (unsigned)VR_TIME);
        if (check_vr(inst, "fmi3SetFloat64", valueReferences[i], K_FLOAT64) != fmi3OK ||
            check_settable(inst, "fmi3SetFloat64", valueReferences[i], values[i]) != fmi3OK)
            return fmi3Error;
    }
    for (size_t i = 0; i < nValueReferences; i++) inst->s.v[valueReferences[i]] = values[i];
    return fmi3OK;
}

#define DEFINE_GET(Suffix, CType, KIND, CONVERT)                                                \
    fmi3Status fmi3Get##Suffix(fmi3Instance instance, const fmi3ValueReference vr[], size_t nvr, \
                               CType values[], size_t nValues) {                             \
        Instance *inst = (Instance *)instance;                                               \
        if (!ARGS_OK(inst, vr, nvr, values)) return fmi3Error;                               \
        if (check_counts(inst, "fmi3Get" #Suffix, nvr, nValues) != fmi3OK) return fmi3Error; \
        for (size_t i = 0; i < nvr; i++) {                                                   \
            if (check_vr(inst, "fmi3Get" #Suffix, vr[i], KIND) != fmi3OK) return fmi3Error;  \
            double x = inst->s.v[vr[i]];                                                     \
            values[i] = CONVERT;                                                             \
        }                                                                                    \
        return fmi3OK;                                                                       \
    }

#define DEFINE_SET(Suffix, CType, KIND, TO_DOUBLE)                                              \
    fmi3Status fmi3Set##Suffix(fmi3Instance instance, const fmi3ValueReference vr[], size_t nvr, \
                               const CType values[], size_t nValues) {                       \
        Instance *inst = (Instance *)instance;                                               \
        if (!ARGS_OK(inst, vr, nvr, values)) return fmi3Error;                               \
        if (check_counts(inst, "fmi3Set" #Suffix, nvr, nValues) != fmi3OK) return fmi3Error; \
        /* Check everything first so a refused call changes nothing. */                     \
        for (size_t i = 0; i < nvr; i++) {                                                   \
            if (vr[i] == VR_TIME)                                                            \
                return fail(inst, "fmi3Set" #Suffix, "time (value reference %u) is the "     \
                            "independent variable and cannot be set", (unsigned)VR_TIME);    \
            if (check_vr(inst, "fmi3Set" #Suffix, vr[i], KIND) != fmi3OK) return fmi3Error;  \
            CType x = values[i];                                                             \
            if (check_settable(inst, "fmi3Set" #Suffix, vr[i], TO_DOUBLE) != fmi3OK)         \
                return fmi3Error;                                                            \
        }                                                                                    \
        for (size_t i = 0; i < nvr; i++) {                                                   \
            CType x = values[i];                                                             \
            inst->s.v[vr[i]] = TO_DOUBLE;                                                    \
        }                                                                                    \
        return fmi3OK;                                                                       \
    }

DEFINE_GET(Int32, fmi3Int32, K_INT32, (fmi3Int32)x)
DEFINE_GET(Int64, fmi3Int64, K_INT64, (fmi3Int64)x)
DEFINE_GET(Boolean, fmi3Boolean, K_BOOLEAN, (x != 0.0 ? fmi3True : fmi3False))
DEFINE_SET(Int32, fmi3Int32, K_INT32, (double)x)
DEFINE_SET(Int64, fmi3Int64, K_INT64, (double)x)
DEFINE_SET(Boolean, fmi3Boolean, K_BOOLEAN, (x ? 1.0 : 0.0))

/* Types no variable of this framework has. */
#define UNSUPPORTED_GET_SET(Suffix, CType)                                                      \
    fmi3Status fmi3Get##Suffix(fmi3Instance instance, const fmi3ValueReference vr[], size_t nvr, \
                               CType values[], size_t nValues) {                             \
        (void)vr; (void)nvr; (void)values; (void)nValues;                                    \
        return not_supported(instance, "fmi3Get" #Suffix);                                   \
    }                                                                                        \
    fmi3Status fmi3Set##Suffix(fmi3Instance instance, const fmi3ValueReference vr[], size_t nvr, \
                               const CType values[], size_t nValues) {                       \
        (void)vr; (void)nvr; (void)values; (void)nValues;                                    \
        return not_supported(instance, "fmi3Set" #Suffix);                                   \
    }

UNSUPPORTED_GET_SET(Float32, fmi3Float32)
UNSUPPORTED_GET_SET(Int8, fmi3Int8)
UNSUPPORTED_GET_SET(UInt8, fmi3UInt8)
UNSUPPORTED_GET_SET(Int16, fmi3Int16)
UNSUPPORTED_GET_SET(UInt16, fmi3UInt16)
UNSUPPORTED_GET_SET(UInt32, fmi3UInt32)
UNSUPPORTED_GET_SET(UInt64, fmi3UInt64)
UNSUPPORTED_GET_SET(String, fmi3String)

fmi3Status fmi3GetBinary(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                         size_t nValueReferences, size_t valueSizes[], fmi3Binary values[],
                         size_t nValues) {
    (void)valueReferences; (void)nValueReferences; (void)valueSizes; (void)values; (void)nValues;
    return not_supported(instance, "fmi3GetBinary");
}

fmi3Status fmi3SetBinary(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                         size_t nValueReferences, const size_t valueSizes[],
                         const fmi3Binary values[], size_t nValues) {
    (void)valueReferences; (void)nValueReferences; (void)valueSizes; (void)values; (void)nValues;
    return not_supported(instance, "fmi3SetBinary");
}

fmi3Status fmi3GetClock(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                        size_t nValueReferences, fmi3Clock values[]) {
    (void)valueReferences; (void)nValueReferences; (void)values;
    return not_supported(instance, "fmi3GetClock");
}

fmi3Status fmi3SetClock(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                        size_t nValueReferences, const fmi3Clock values[]) {
    (void)valueReferences; (void)nValueReferences; (void)values;
    return not_supported(instance, "fmi3SetClock");
}

/* ---- FMU state ------------------------------------------------------------- */

fmi3Status fmi3GetFMUState(fmi3Instance instance, fmi3FMUState *FMUState) {
    Instance *inst = (Instance *)instance;
    if (inst == NULL || FMUState == NULL) return fmi3Error;
    SavedState *saved = (SavedState *)(*FMUState);
    if (saved == NULL) {
        saved = (SavedState *)malloc(sizeof(SavedState));
        if (saved == NULL) return fail(inst, "fmi3GetFMUState", "out of memory");
    }
    saved->s = inst->s;
    saved->mode = inst->mode;
    *FMUState = saved;
    return fmi3OK;
}

fmi3Status fmi3SetFMUState(fmi3Instance instance, fmi3FMUState FMUState) {
    Instance *inst = (Instance *)instance;
    if (inst == NULL) return fmi3Error;
    if (FMUState == NULL) return fail(inst, "fmi3SetFMUState", "state is NULL");
    const SavedState *saved = (const SavedState *)FMUState;
    inst->s = saved->s;
    inst->mode = saved->mode;
    return fmi3OK;
}

fmi3Status fmi3FreeFMUState(fmi3Instance instance, fmi3FMUState *FMUState) {
    (void)instance;
    if (FMUState == NULL) return fmi3OK;
    free(*FMUState);
    *FMUState = NULL;
    return fmi3OK;
}

fmi3Status fmi3SerializedFMUStateSize(fmi3Instance instance, fmi3FMUState FMUState,
                                      size_t *size) {
    (void)instance;
    (void)FMUState;
    if (size == NULL) return fmi3Error;
    *size = sizeof(StateHeader) + sizeof(SavedState);
    return fmi3OK;
}

fmi3Status fmi3SerializeFMUState(fmi3Instance instance, fmi3FMUState FMUState,
                                 fmi3Byte serializedState[], size_t size) {
    Instance *inst = (Instance *)instance;
    if (FMUState == NULL || serializedState == NULL)
        return fail(inst, "fmi3SerializeFMUState", "state or buffer is NULL");
    if (size < sizeof(StateHeader) + sizeof(SavedState))
        return fail(inst, "fmi3SerializeFMUState", "buffer of %zu bytes is too small, need %zu",
                    size, sizeof(StateHeader) + sizeof(SavedState));
    StateHeader h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, STATE_MAGIC, sizeof h.magic);
    h.state_size = sizeof(SavedState);
    strncpy(h.token, MODEL_GUID, TOKEN_FIELD - 1);
    memcpy(serializedState, &h, sizeof h);
    memcpy(serializedState + sizeof h, FMUState, sizeof(SavedState));
    return fmi3OK;
}

fmi3Status fmi3DeserializeFMUState(fmi3Instance instance, const fmi3Byte serializedState[],
                                   size_t size, fmi3FMUState *FMUState) {
    Instance *inst = (Instance *)instance;
    if (serializedState == NULL || FMUState == NULL)
        return fail(inst, "fmi3DeserializeFMUState", "buffer or state pointer is NULL");
    StateHeader h;
    if (size != sizeof h + sizeof(SavedState))
        return fail(inst, "fmi3DeserializeFMUState", "%zu bytes given, a %s state has %zu", size,
                    MODEL_NAME, sizeof h + sizeof(SavedState));
    memcpy(&h, serializedState, sizeof h);
    if (memcmp(h.magic, STATE_MAGIC, sizeof h.magic) != 0 || h.state_size != sizeof(SavedState))
        return fail(inst, "fmi3DeserializeFMUState", "not a serialized FMI 3.0 %s state",
                    MODEL_NAME);
    if (strncmp(h.token, MODEL_GUID, TOKEN_FIELD) != 0)
        return fail(inst, "fmi3DeserializeFMUState", "state of model %.*s, not of this model %s",
                    TOKEN_FIELD, h.token, MODEL_GUID);
    SavedState *saved = (SavedState *)(*FMUState);
    if (saved == NULL) {
        saved = (SavedState *)malloc(sizeof(SavedState));
        if (saved == NULL) return fail(inst, "fmi3DeserializeFMUState", "out of memory");
    }
    memcpy(saved, serializedState + sizeof h, sizeof(SavedState));
    *FMUState = saved;
    return fmi3OK;
}

/* ---- stepping ------------------------------------------------------------------ */

fmi3Status fmi3DoStep(fmi3Instance instance, fmi3Float64 currentCommunicationPoint,
                      fmi3Float64 communicationStepSize,
                      fmi3Boolean noSetFMUStatePriorToCurrentPoint,
                      fmi3Boolean *eventHandlingNeeded, fmi3Boolean *terminateSimulation,
                      fmi3Boolean *earlyReturn, fmi3Float64 *lastSuccessfulTime) {
    (void)noSetFMUStatePriorToCurrentPoint;
    Instance *inst = (Instance *)instance;
    if (inst == NULL) return fmi3Error;
    /* No events, no early return, never a request to stop. */
    if (eventHandlingNeeded) *eventHandlingNeeded = fmi3False;
    if (terminateSimulation) *terminateSimulation = fmi3False;
    if (earlyReturn) *earlyReturn = fmi3False;
    if (lastSuccessfulTime) *lastSuccessfulTime = inst->s.time;
    if (inst->mode != MODE_STEP)
        return fail(inst, "fmi3DoStep", "not in step mode (initialization not finished, event "
                    "mode, or an error)");
    if (!(communicationStepSize > 0.0))
        return fail(inst, "fmi3DoStep", "step size %g must be > 0", communicationStepSize);
    double tol = 1e-9 * fmax(1.0, fabs(currentCommunicationPoint));
    if (fabs(currentCommunicationPoint - inst->s.time) > tol)
        return fail(inst, "fmi3DoStep", "communication point %.17g does not match the model time %.17g",
                    currentCommunicationPoint, inst->s.time);
    if (inst->stop_time_defined && currentCommunicationPoint + communicationStepSize >
                                       inst->stop_time + 1e-9 * fmax(1.0, fabs(inst->stop_time)))
        return fail(inst, "fmi3DoStep", "step to %g goes past the stop time %g",
                    currentCommunicationPoint + communicationStepSize, inst->stop_time);
    char msg[800] = "";
    ModelStatus st = model_do_step(&inst->s, communicationStepSize, msg, sizeof msg);
    /* Step from the caller's time so rounding never accumulates. */
    inst->s.time = currentCommunicationPoint + communicationStepSize;
    if (lastSuccessfulTime) *lastSuccessfulTime = inst->s.time;
    if (st >= MODEL_DISCARD) {
        if (st == MODEL_ERROR) inst->mode = MODE_ERROR;
        log_message(inst, (fmi3Status)st, "logStatusError", "fmi3DoStep at t=%g: %s",
                    currentCommunicationPoint, msg[0] ? msg : "model_do_step failed");
    } else if (st == MODEL_WARNING) {
        log_message(inst, fmi3Warning, "logStatusWarning", "fmi3DoStep at t=%g: %s",
                    currentCommunicationPoint, msg);
    }
    return (fmi3Status)st;
}

/* ---- capabilities this framework does not provide -------------------------- */

fmi3Status fmi3EnterConfigurationMode(fmi3Instance instance) {
    return not_supported(instance, "fmi3EnterConfigurationMode");
}

fmi3Status fmi3ExitConfigurationMode(fmi3Instance instance) {
    return not_supported(instance, "fmi3ExitConfigurationMode");
}

fmi3Status fmi3GetNumberOfVariableDependencies(fmi3Instance instance,
                                               fmi3ValueReference valueReference,
                                               size_t *nDependencies) {
    (void)valueReference; (void)nDependencies;
    return not_supported(instance, "fmi3GetNumberOfVariableDependencies");
}

fmi3Status fmi3GetVariableDependencies(fmi3Instance instance, fmi3ValueReference dependent,
                                       size_t elementIndicesOfDependent[],
                                       fmi3ValueReference independents[],
                                       size_t elementIndicesOfIndependents[],
                                       fmi3DependencyKind dependencyKinds[],
                                       size_t nDependencies) {
    (void)dependent; (void)elementIndicesOfDependent; (void)independents;
    (void)elementIndicesOfIndependents; (void)dependencyKinds; (void)nDependencies;
    return not_supported(instance, "fmi3GetVariableDependencies");
}

fmi3Status fmi3GetDirectionalDerivative(fmi3Instance instance,
                                        const fmi3ValueReference unknowns[], size_t nUnknowns,
                                        const fmi3ValueReference knowns[], size_t nKnowns,
                                        const fmi3Float64 seed[], size_t nSeed,
                                        fmi3Float64 sensitivity[], size_t nSensitivity) {
    (void)unknowns; (void)nUnknowns; (void)knowns; (void)nKnowns; (void)seed; (void)nSeed;
    (void)sensitivity; (void)nSensitivity;
    return not_supported(instance, "fmi3GetDirectionalDerivative");
}

fmi3Status fmi3GetAdjointDerivative(fmi3Instance instance, const fmi3ValueReference unknowns[],
                                    size_t nUnknowns, const fmi3ValueReference knowns[],
                                    size_t nKnowns, const fmi3Float64 seed[], size_t nSeed,
                                    fmi3Float64 sensitivity[], size_t nSensitivity) {
    (void)unknowns; (void)nUnknowns; (void)knowns; (void)nKnowns; (void)seed; (void)nSeed;
    (void)sensitivity; (void)nSensitivity;
    return not_supported(instance, "fmi3GetAdjointDerivative");
}

fmi3Status fmi3GetOutputDerivatives(fmi3Instance instance,
                                    const fmi3ValueReference valueReferences[],
                                    size_t nValueReferences, const fmi3Int32 orders[],
                                    fmi3Float64 values[], size_t nValues) {
    (void)valueReferences; (void)nValueReferences; (void)orders; (void)values; (void)nValues;
    return not_supported(instance, "fmi3GetOutputDerivatives");
}

fmi3Status fmi3GetIntervalDecimal(fmi3Instance instance,
                                  const fmi3ValueReference valueReferences[],
                                  size_t nValueReferences, fmi3Float64 intervals[],
                                  fmi3IntervalQualifier qualifiers[]) {
    (void)valueReferences; (void)nValueReferences; (void)intervals; (void)qualifiers;
    return not_supported(instance, "fmi3GetIntervalDecimal");
}

fmi3Status fmi3GetIntervalFraction(fmi3Instance instance,
                                   const fmi3ValueReference valueReferences[],
                                   size_t nValueReferences, fmi3UInt64 counters[],
                                   fmi3UInt64 resolutions[], fmi3IntervalQualifier qualifiers[]) {
    (void)valueReferences; (void)nValueReferences; (void)counters; (void)resolutions;
    (void)qualifiers;
    return not_supported(instance, "fmi3GetIntervalFraction");
}

fmi3Status fmi3GetShiftDecimal(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                               size_t nValueReferences, fmi3Float64 shifts[]) {
    (void)valueReferences; (void)nValueReferences; (void)shifts;
    return not_supported(instance, "fmi3GetShiftDecimal");
}

fmi3Status fmi3GetShiftFraction(fmi3Instance instance,
                                const fmi3ValueReference valueReferences[],
                                size_t nValueReferences, fmi3UInt64 counters[],
                                fmi3UInt64 resolutions[]) {
    (void)valueReferences; (void)nValueReferences; (void)counters; (void)resolutions;
    return not_supported(instance, "fmi3GetShiftFraction");
}

fmi3Status fmi3SetIntervalDecimal(fmi3Instance instance,
                                  const fmi3ValueReference valueReferences[],
                                  size_t nValueReferences, const fmi3Float64 intervals[]) {
    (void)valueReferences; (void)nValueReferences; (void)intervals;
    return not_supported(instance, "fmi3SetIntervalDecimal");
}

fmi3Status fmi3SetIntervalFraction(fmi3Instance instance,
                                   const fmi3ValueReference valueReferences[],
                                   size_t nValueReferences, const fmi3UInt64 counters[],
                                   const fmi3UInt64 resolutions[]) {
    (void)valueReferences; (void)nValueReferences; (void)counters; (void)resolutions;
    return not_supported(instance, "fmi3SetIntervalFraction");
}

fmi3Status fmi3SetShiftDecimal(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                               size_t nValueReferences, const fmi3Float64 shifts[]) {
    (void)valueReferences; (void)nValueReferences; (void)shifts;
    return not_supported(instance, "fmi3SetShiftDecimal");
}

fmi3Status fmi3SetShiftFraction(fmi3Instance instance,
                                const fmi3ValueReference valueReferences[],
                                size_t nValueReferences, const fmi3UInt64 counters[],
                                const fmi3UInt64 resolutions[]) {
    (void)valueReferences; (void)nValueReferences; (void)counters; (void)resolutions;
    return not_supported(instance, "fmi3SetShiftFraction");
}

fmi3Status fmi3EvaluateDiscreteStates(fmi3Instance instance) {
    return not_supported(instance, "fmi3EvaluateDiscreteStates");
}

/* Model exchange */

fmi3Status fmi3EnterContinuousTimeMode(fmi3Instance instance) {
    return not_supported(instance, "fmi3EnterContinuousTimeMode");
}

fmi3Status fmi3CompletedIntegratorStep(fmi3Instance instance,
                                       fmi3Boolean noSetFMUStatePriorToCurrentPoint,
                                       fmi3Boolean *enterEventMode,
                                       fmi3Boolean *terminateSimulation) {
    (void)noSetFMUStatePriorToCurrentPoint; (void)enterEventMode; (void)terminateSimulation;
    return not_supported(instance, "fmi3CompletedIntegratorStep");
}

fmi3Status fmi3SetTime(fmi3Instance instance, fmi3Float64 time) {
    (void)time;
    return not_supported(instance, "fmi3SetTime");
}

fmi3Status fmi3SetContinuousStates(fmi3Instance instance, const fmi3Float64 continuousStates[],
                                   size_t nContinuousStates) {
    (void)continuousStates; (void)nContinuousStates;
    return not_supported(instance, "fmi3SetContinuousStates");
}

fmi3Status fmi3GetContinuousStateDerivatives(fmi3Instance instance, fmi3Float64 derivatives[],
                                             size_t nContinuousStates) {
    (void)derivatives; (void)nContinuousStates;
    return not_supported(instance, "fmi3GetContinuousStateDerivatives");
}

fmi3Status fmi3GetEventIndicators(fmi3Instance instance, fmi3Float64 eventIndicators[],
                                  size_t nEventIndicators) {
    (void)eventIndicators; (void)nEventIndicators;
    return not_supported(instance, "fmi3GetEventIndicators");
}

fmi3Status fmi3GetContinuousStates(fmi3Instance instance, fmi3Float64 continuousStates[],
                                   size_t nContinuousStates) {
    (void)continuousStates; (void)nContinuousStates;
    return not_supported(instance, "fmi3GetContinuousStates");
}

fmi3Status fmi3GetNominalsOfContinuousStates(fmi3Instance instance, fmi3Float64 nominals[],
                                             size_t nContinuousStates) {
    (void)nominals; (void)nContinuousStates;
    return not_supported(instance, "fmi3GetNominalsOfContinuousStates");
}

fmi3Status fmi3GetNumberOfEventIndicators(fmi3Instance instance, size_t *nEventIndicators) {
    (void)nEventIndicators;
    return not_supported(instance, "fmi3GetNumberOfEventIndicators");
}

fmi3Status fmi3GetNumberOfContinuousStates(fmi3Instance instance, size_t *nContinuousStates) {
    (void)nContinuousStates;
    return not_supported(instance, "fmi3GetNumberOfContinuousStates");
}

/* Scheduled execution */

fmi3Status fmi3ActivateModelPartition(fmi3Instance instance, fmi3ValueReference clockReference,
                                      fmi3Float64 activationTime) {
    (void)clockReference; (void)activationTime;
    return not_supported(instance, "fmi3ActivateModelPartition");
}
