/*
 * asset-twin model framework: the FMI 2.0 co-simulation API around a model
 * written against model.h. One file serves every model under physics/models.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fmi2Functions.h"
#include "model.h"

typedef enum {
    MODE_INSTANTIATED,
    MODE_INITIALIZATION,
    MODE_STEP,
    MODE_TERMINATED,
    MODE_ERROR
} Mode;

typedef struct {
    ModelState s;
    Mode mode;
    int logging_on;
    char *instance_name;
    fmi2CallbackLogger logger;
    fmi2ComponentEnvironment env;
    fmi2Real stop_time;
    fmi2Boolean stop_time_defined;
} Instance;

/* A saved FMU state: the run's state and the mode it was taken in. */
typedef struct {
    ModelState s;
    Mode mode;
} SavedState;

/* Serialized layout: magic, size of ModelState, GUID, then SavedState. */
#define STATE_MAGIC "ATWINST1"
#define GUID_FIELD 64
typedef struct {
    char magic[8];
    unsigned long long state_size;
    char guid[GUID_FIELD];
} StateHeader;

static void log_message(const Instance *inst, fmi2Status status, const char *category,
                        const char *fmt, ...) {
    if (inst == NULL || inst->logger == NULL) return;
    if (status == fmi2OK && !inst->logging_on) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    /* The logger treats the message as a printf format: pass it through %s. */
    inst->logger(inst->env, inst->instance_name, status, category, "%s", buf);
}

static fmi2Status fail(Instance *inst, const char *function, const char *fmt, ...) {
    char buf[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    log_message(inst, fmi2Error, "logStatusError", "%s: %s", function, buf);
    return fmi2Error;
}

static void reset_to_start(Instance *inst) {
    memset(&inst->s, 0, sizeof inst->s);
    for (int i = 0; i < N_VARS; i++) inst->s.v[i] = MODEL_VARS[i].start;
    inst->s.time = 0.0;
    inst->mode = MODE_INSTANTIATED;
}

/* ---- common functions -------------------------------------------------- */

const char *fmi2GetTypesPlatform(void) { return fmi2TypesPlatform; }
const char *fmi2GetVersion(void) { return fmi2Version; }

fmi2Status fmi2SetDebugLogging(fmi2Component c, fmi2Boolean loggingOn, size_t nCategories,
                               const fmi2String categories[]) {
    (void)nCategories;
    (void)categories;
    if (c == NULL) return fmi2Error;
    ((Instance *)c)->logging_on = loggingOn ? 1 : 0;
    return fmi2OK;
}

fmi2Component fmi2Instantiate(fmi2String instanceName, fmi2Type fmuType, fmi2String fmuGUID,
                              fmi2String fmuResourceLocation,
                              const fmi2CallbackFunctions *functions, fmi2Boolean visible,
                              fmi2Boolean loggingOn) {
    (void)fmuResourceLocation;
    (void)visible;
    fmi2CallbackLogger logger = functions ? functions->logger : NULL;
    fmi2ComponentEnvironment env = functions ? functions->componentEnvironment : NULL;
    const char *name = instanceName ? instanceName : "";
    if (fmuType != fmi2CoSimulation) {
        if (logger) logger(env, name, fmi2Error, "logStatusError",
                           "fmi2Instantiate: %s supports co-simulation only", MODEL_NAME);
        return NULL;
    }
    if (fmuGUID == NULL || strcmp(fmuGUID, MODEL_GUID) != 0) {
        if (logger) logger(env, name, fmi2Error, "logStatusError",
                           "fmi2Instantiate: GUID %s does not match this binary's %s",
                           fmuGUID ? fmuGUID : "(null)", MODEL_GUID);
        return NULL;
    }
    Instance *inst = (Instance *)calloc(1, sizeof(Instance));
    if (inst == NULL) return NULL;
    inst->instance_name = (char *)malloc(strlen(name) + 1);
    if (inst->instance_name == NULL) {
        free(inst);
        return NULL;
    }
    strcpy(inst->instance_name, name);
    inst->logger = logger;
    inst->env = env;
    inst->logging_on = loggingOn ? 1 : 0;
    reset_to_start(inst);
    return inst;
}

void fmi2FreeInstance(fmi2Component c) {
    Instance *inst = (Instance *)c;
    if (inst == NULL) return;
    free(inst->instance_name);
    free(inst);
}

fmi2Status fmi2SetupExperiment(fmi2Component c, fmi2Boolean toleranceDefined,
                               fmi2Real tolerance, fmi2Real startTime,
                               fmi2Boolean stopTimeDefined, fmi2Real stopTime) {
    (void)toleranceDefined;
    (void)tolerance;
    Instance *inst = (Instance *)c;
    if (inst == NULL) return fmi2Error;
    if (inst->mode != MODE_INSTANTIATED)
        return fail(inst, "fmi2SetupExperiment", "only allowed right after instantiation or reset");
    inst->s.time = startTime;
    inst->stop_time_defined = stopTimeDefined;
    inst->stop_time = stopTime;
    return fmi2OK;
}

fmi2Status fmi2EnterInitializationMode(fmi2Component c) {
    Instance *inst = (Instance *)c;
    if (inst == NULL) return fmi2Error;
    if (inst->mode != MODE_INSTANTIATED)
        return fail(inst, "fmi2EnterInitializationMode", "only allowed after instantiation or reset");
    inst->mode = MODE_INITIALIZATION;
    return fmi2OK;
}

fmi2Status fmi2ExitInitializationMode(fmi2Component c) {
    Instance *inst = (Instance *)c;
    if (inst == NULL) return fmi2Error;
    if (inst->mode != MODE_INITIALIZATION)
        return fail(inst, "fmi2ExitInitializationMode", "not in initialization mode");
    char msg[800] = "";
    ModelStatus st = model_initialize(&inst->s, msg, sizeof msg);
    if (st >= MODEL_DISCARD) {
        inst->mode = MODE_ERROR;
        return fail(inst, "fmi2ExitInitializationMode", "%s", msg[0] ? msg : "model_initialize failed");
    }
    if (st == MODEL_WARNING)
        log_message(inst, fmi2Warning, "logStatusWarning", "fmi2ExitInitializationMode: %s", msg);
    inst->mode = MODE_STEP;
    return (fmi2Status)st;
}

fmi2Status fmi2Terminate(fmi2Component c) {
    Instance *inst = (Instance *)c;
    if (inst == NULL) return fmi2Error;
    inst->mode = MODE_TERMINATED;
    return fmi2OK;
}

fmi2Status fmi2Reset(fmi2Component c) {
    Instance *inst = (Instance *)c;
    if (inst == NULL) return fmi2Error;
    reset_to_start(inst);
    inst->stop_time_defined = fmi2False;
    return fmi2OK;
}

/* ---- variable access ------------------------------------------------------ */

static fmi2Status check_vr(Instance *inst, const char *function, fmi2ValueReference vr,
                           VarType type) {
    static const char *type_names[] = {"Real", "Integer", "Boolean"};
    if (vr >= (fmi2ValueReference)N_VARS)
        return fail(inst, function, "value reference %u does not exist (this model has %d)",
                    (unsigned)vr, N_VARS);
    if (MODEL_VARS[vr].type != type)
        return fail(inst, function, "variable %s (value reference %u) is of type %s, not %s",
                    MODEL_VARS[vr].name, (unsigned)vr, type_names[MODEL_VARS[vr].type],
                    type_names[type]);
    return fmi2OK;
}

static fmi2Status check_settable(Instance *inst, const char *function, fmi2ValueReference vr,
                                 double value) {
    const VarDef *d = &MODEL_VARS[vr];
    if (inst->mode == MODE_TERMINATED || inst->mode == MODE_ERROR)
        return fail(inst, function, "cannot set %s after termination or an error", d->name);
    if (d->causality == CA_PARAMETER) {
        if (inst->mode == MODE_STEP)
            return fail(inst, function, "%s is a fixed parameter; set it before initialization ends",
                        d->name);
    } else if (d->causality != CA_INPUT) {
        return fail(inst, function, "%s is not a parameter or input and cannot be set", d->name);
    }
    if (isnan(value))
        return fail(inst, function, "%s = NaN is not a number", d->name);
    if (value < d->min || value > d->max)
        return fail(inst, function, "%s = %g is outside its range [%g, %g]", d->name, value, d->min,
                    d->max);
    return fmi2OK;
}

#define DEFINE_GET(Suffix, CType, VT, CONVERT)                                                  \
    fmi2Status fmi2Get##Suffix(fmi2Component c, const fmi2ValueReference vr[], size_t nvr,    \
                               CType value[]) {                                              \
        Instance *inst = (Instance *)c;                                                      \
        if (inst == NULL) return fmi2Error;                                                  \
        if (nvr > 0 && (vr == NULL || value == NULL)) return fmi2Error;                      \
        for (size_t i = 0; i < nvr; i++) {                                                   \
            if (check_vr(inst, "fmi2Get" #Suffix, vr[i], VT) != fmi2OK) return fmi2Error;    \
            double x = inst->s.v[vr[i]];                                                     \
            value[i] = CONVERT;                                                              \
        }                                                                                    \
        return fmi2OK;                                                                       \
    }

#define DEFINE_SET(Suffix, CType, VT, TO_DOUBLE)                                                \
    fmi2Status fmi2Set##Suffix(fmi2Component c, const fmi2ValueReference vr[], size_t nvr,    \
                               const CType value[]) {                                        \
        Instance *inst = (Instance *)c;                                                      \
        if (inst == NULL) return fmi2Error;                                                  \
        if (nvr > 0 && (vr == NULL || value == NULL)) return fmi2Error;                      \
        /* Check everything first so a refused call changes nothing. */                     \
        for (size_t i = 0; i < nvr; i++) {                                                   \
            if (check_vr(inst, "fmi2Set" #Suffix, vr[i], VT) != fmi2OK) return fmi2Error;    \
            CType x = value[i];                                                              \
            if (check_settable(inst, "fmi2Set" #Suffix, vr[i], TO_DOUBLE) != fmi2OK)         \
                return fmi2Error;                                                            \
        }                                                                                    \
        for (size_t i = 0; i < nvr; i++) {                                                   \
            CType x = value[i];                                                              \
            inst->s.v[vr[i]] = TO_DOUBLE;                                                    \
        }                                                                                    \
        return fmi2OK;                                                                       \
    }

DEFINE_GET(Real, fmi2Real, VT_REAL, x)
DEFINE_GET(Integer, fmi2Integer, VT_INTEGER, (fmi2Integer)x)
DEFINE_GET(Boolean, fmi2Boolean, VT_BOOLEAN, (x != 0.0 ? fmi2True : fmi2False))
DEFINE_SET(Real, fmi2Real, VT_REAL, x)
DEFINE_SET(Integer, fmi2Integer, VT_INTEGER, (double)x)
DEFINE_SET(Boolean, fmi2Boolean, VT_BOOLEAN, (x ? 1.0 : 0.0))

fmi2Status fmi2GetString(fmi2Component c, const fmi2ValueReference vr[], size_t nvr,
                         fmi2String value[]) {
    (void)value;
    if (nvr == 0) return fmi2OK;
    return fail((Instance *)c, "fmi2GetString", "this model has no String variables (vr %u)",
                vr ? (unsigned)vr[0] : 0u);
}

fmi2Status fmi2SetString(fmi2Component c, const fmi2ValueReference vr[], size_t nvr,
                         const fmi2String value[]) {
    (void)value;
    if (nvr == 0) return fmi2OK;
    return fail((Instance *)c, "fmi2SetString", "this model has no String variables (vr %u)",
                vr ? (unsigned)vr[0] : 0u);
}

/* ---- FMU state ------------------------------------------------------------- */

fmi2Status fmi2GetFMUstate(fmi2Component c, fmi2FMUstate *FMUstate) {
    Instance *inst = (Instance *)c;
    if (inst == NULL || FMUstate == NULL) return fmi2Error;
    SavedState *saved = (SavedState *)(*FMUstate);
    if (saved == NULL) {
        saved = (SavedState *)malloc(sizeof(SavedState));
        if (saved == NULL) return fail(inst, "fmi2GetFMUstate", "out of memory");
    }
    saved->s = inst->s;
    saved->mode = inst->mode;
    *FMUstate = saved;
    return fmi2OK;
}

fmi2Status fmi2SetFMUstate(fmi2Component c, fmi2FMUstate FMUstate) {
    Instance *inst = (Instance *)c;
    if (inst == NULL) return fmi2Error;
    if (FMUstate == NULL) return fail(inst, "fmi2SetFMUstate", "state is NULL");
    const SavedState *saved = (const SavedState *)FMUstate;
    inst->s = saved->s;
    inst->mode = saved->mode;
    return fmi2OK;
}

fmi2Status fmi2FreeFMUstate(fmi2Component c, fmi2FMUstate *FMUstate) {
    (void)c;
    if (FMUstate == NULL) return fmi2OK;
    free(*FMUstate);
    *FMUstate = NULL;
    return fmi2OK;
}

fmi2Status fmi2SerializedFMUstateSize(fmi2Component c, fmi2FMUstate FMUstate, size_t *size) {
    (void)c;
    (void)FMUstate;
    if (size == NULL) return fmi2Error;
    *size = sizeof(StateHeader) + sizeof(SavedState);
    return fmi2OK;
}

fmi2Status fmi2SerializeFMUstate(fmi2Component c, fmi2FMUstate FMUstate, fmi2Byte bytes[],
                                 size_t size) {
    Instance *inst = (Instance *)c;
    if (FMUstate == NULL || bytes == NULL) return fmi2Error;
    if (size < sizeof(StateHeader) + sizeof(SavedState))
        return fail(inst, "fmi2SerializeFMUstate", "buffer of %zu bytes is too small, need %zu",
                    size, sizeof(StateHeader) + sizeof(SavedState));
    StateHeader h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, STATE_MAGIC, sizeof h.magic);
    h.state_size = sizeof(SavedState);
    strncpy(h.guid, MODEL_GUID, GUID_FIELD - 1);
    memcpy(bytes, &h, sizeof h);
    memcpy(bytes + sizeof h, FMUstate, sizeof(SavedState));
    return fmi2OK;
}

fmi2Status fmi2DeSerializeFMUstate(fmi2Component c, const fmi2Byte bytes[], size_t size,
                                   fmi2FMUstate *FMUstate) {
    Instance *inst = (Instance *)c;
    if (bytes == NULL || FMUstate == NULL) return fmi2Error;
    StateHeader h;
    if (size != sizeof h + sizeof(SavedState))
        return fail(inst, "fmi2DeSerializeFMUstate", "%zu bytes given, a %s state has %zu", size,
                    MODEL_NAME, sizeof h + sizeof(SavedState));
    memcpy(&h, bytes, sizeof h);
    if (memcmp(h.magic, STATE_MAGIC, sizeof h.magic) != 0 || h.state_size != sizeof(SavedState))
        return fail(inst, "fmi2DeSerializeFMUstate", "not a serialized %s state", MODEL_NAME);
    if (strncmp(h.guid, MODEL_GUID, GUID_FIELD) != 0)
        return fail(inst, "fmi2DeSerializeFMUstate", "state of model %s, not of this model %s",
                    h.guid, MODEL_GUID);
    SavedState *saved = (SavedState *)(*FMUstate);
    if (saved == NULL) {
        saved = (SavedState *)malloc(sizeof(SavedState));
        if (saved == NULL) return fail(inst, "fmi2DeSerializeFMUstate", "out of memory");
    }
    memcpy(saved, bytes + sizeof h, sizeof(SavedState));
    *FMUstate = saved;
    return fmi2OK;
}

/* ---- capabilities this framework does not provide -------------------------- */

fmi2Status fmi2GetDirectionalDerivative(fmi2Component c, const fmi2ValueReference vUnknown_ref[],
                                        size_t nUnknown, const fmi2ValueReference vKnown_ref[],
                                        size_t nKnown, const fmi2Real dvKnown[],
                                        fmi2Real dvUnknown[]) {
    (void)vUnknown_ref; (void)nUnknown; (void)vKnown_ref; (void)nKnown; (void)dvKnown;
    (void)dvUnknown;
    return fail((Instance *)c, "fmi2GetDirectionalDerivative", "not provided");
}

fmi2Status fmi2SetRealInputDerivatives(fmi2Component c, const fmi2ValueReference vr[], size_t nvr,
                                       const fmi2Integer order[], const fmi2Real value[]) {
    (void)vr; (void)nvr; (void)order; (void)value;
    return fail((Instance *)c, "fmi2SetRealInputDerivatives", "inputs are not interpolated");
}

fmi2Status fmi2GetRealOutputDerivatives(fmi2Component c, const fmi2ValueReference vr[],
                                        size_t nvr, const fmi2Integer order[], fmi2Real value[]) {
    (void)vr; (void)nvr; (void)order; (void)value;
    return fail((Instance *)c, "fmi2GetRealOutputDerivatives", "not provided");
}

fmi2Status fmi2CancelStep(fmi2Component c) {
    return fail((Instance *)c, "fmi2CancelStep", "steps are synchronous");
}

/* ---- stepping ------------------------------------------------------------------ */

fmi2Status fmi2DoStep(fmi2Component c, fmi2Real currentCommunicationPoint,
                      fmi2Real communicationStepSize, fmi2Boolean noSetFMUStatePriorToCurrentPoint) {
    (void)noSetFMUStatePriorToCurrentPoint;
    Instance *inst = (Instance *)c;
    if (inst == NULL) return fmi2Error;
    if (inst->mode != MODE_STEP)
        return fail(inst, "fmi2DoStep", "not in step mode (initialization not finished, or an error)");
    if (!(communicationStepSize > 0.0))
        return fail(inst, "fmi2DoStep", "step size %g must be > 0", communicationStepSize);
    double tol = 1e-9 * fmax(1.0, fabs(currentCommunicationPoint));
    if (fabs(currentCommunicationPoint - inst->s.time) > tol)
        return fail(inst, "fmi2DoStep", "communication point %.17g does not match the model time %.17g",
                    currentCommunicationPoint, inst->s.time);
    if (inst->stop_time_defined && currentCommunicationPoint + communicationStepSize >
                                       inst->stop_time + 1e-9 * fmax(1.0, fabs(inst->stop_time)))
        return fail(inst, "fmi2DoStep", "step to %g goes past the stop time %g",
                    currentCommunicationPoint + communicationStepSize, inst->stop_time);
    char msg[800] = "";
    ModelStatus st = model_do_step(&inst->s, communicationStepSize, msg, sizeof msg);
    /* Step from the caller's time so rounding never accumulates. */
    inst->s.time = currentCommunicationPoint + communicationStepSize;
    if (st >= MODEL_DISCARD) {
        if (st == MODEL_ERROR) inst->mode = MODE_ERROR;
        log_message(inst, (fmi2Status)st, "logStatusError", "fmi2DoStep at t=%g: %s",
                    currentCommunicationPoint, msg[0] ? msg : "model_do_step failed");
    } else if (st == MODEL_WARNING) {
        log_message(inst, fmi2Warning, "logStatusWarning", "fmi2DoStep at t=%g: %s",
                    currentCommunicationPoint, msg);
    }
    return (fmi2Status)st;
}

fmi2Status fmi2GetStatus(fmi2Component c, const fmi2StatusKind s, fmi2Status *value) {
    (void)s;
    (void)value;
    return fail((Instance *)c, "fmi2GetStatus", "steps are synchronous; no pending status");
}

fmi2Status fmi2GetRealStatus(fmi2Component c, const fmi2StatusKind s, fmi2Real *value) {
    Instance *inst = (Instance *)c;
    if (inst == NULL || value == NULL) return fmi2Error;
    if (s != fmi2LastSuccessfulTime) return fail(inst, "fmi2GetRealStatus", "unsupported status kind");
    *value = inst->s.time;
    return fmi2OK;
}

fmi2Status fmi2GetIntegerStatus(fmi2Component c, const fmi2StatusKind s, fmi2Integer *value) {
    (void)s;
    (void)value;
    return fail((Instance *)c, "fmi2GetIntegerStatus", "unsupported status kind");
}

fmi2Status fmi2GetBooleanStatus(fmi2Component c, const fmi2StatusKind s, fmi2Boolean *value) {
    Instance *inst = (Instance *)c;
    if (inst == NULL || value == NULL) return fmi2Error;
    if (s != fmi2Terminated) return fail(inst, "fmi2GetBooleanStatus", "unsupported status kind");
    *value = fmi2False;
    return fmi2OK;
}

fmi2Status fmi2GetStringStatus(fmi2Component c, const fmi2StatusKind s, fmi2String *value) {
    (void)s;
    (void)value;
    return fail((Instance *)c, "fmi2GetStringStatus", "unsupported status kind");
}
