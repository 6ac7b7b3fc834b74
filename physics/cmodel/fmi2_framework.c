/*
 * asset-twin model framework: the FMI 2.0 co-simulation API around a model
 * written against model.h. One file serves every model under physics/models.
 * What does not depend on the FMI version is in framework_core.c; this file
 * translates FMI 2.0 types and statuses to it.
 *
 * A model whose table has a model_exchange section (MODEL_EXCHANGE in its
 * generated header) gets the FMI 2.0 model-exchange API as well, at the end
 * of this file: the same binary then serves both interfaces, so a test can
 * run one model through an ODE solver and through its own exact step.
 */
#include <stdlib.h>
#include <string.h>

#include "fmi2Functions.h"
#include "framework_core.h"

typedef struct {
    Core core; /* first: an fmi2Component is also a Core pointer */
    char *instance_name;
    fmi2CallbackLogger logger;
    fmi2ComponentEnvironment env;
} Instance;

static const StateFormat STATE_FORMAT = {"ATWINST1", ""};

static const char *const TYPE_NAMES[] = {"Real", "Integer", "Boolean"};

/* ModelStatus has the numbers of fmi2Status. */
static fmi2Status to_fmi2(ModelStatus st) { return (fmi2Status)st; }

static Core *core_of(fmi2Component c) { return (Core *)c; }

#define FAIL(c, ...) to_fmi2(core_fail(core_of(c), __VA_ARGS__))

static void log_to_fmi2(const Core *core, ModelStatus status, const char *category,
                        const char *message) {
    const Instance *inst = (const Instance *)core;
    if (inst->logger == NULL) return;
    /* The logger treats the message as a printf format: pass it through %s. */
    inst->logger(inst->env, inst->instance_name, to_fmi2(status), category, "%s", message);
}

/* type is a VarType. */
static ModelStatus check_vr(const Core *core, const char *function, unsigned int vr, int type,
                            int writing) {
    (void)writing;
    if (vr >= (unsigned int)N_VARS)
        return core_fail(core, function, "value reference %u does not exist (this model has %d)",
                         vr, N_VARS);
    if ((int)MODEL_VARS[vr].type != type)
        return core_fail(core, function, "variable %s (value reference %u) is of type %s, not %s",
                         MODEL_VARS[vr].name, vr, TYPE_NAMES[MODEL_VARS[vr].type],
                         TYPE_NAMES[type]);
    return MODEL_OK;
}

/* ---- common functions -------------------------------------------------- */

const char *fmi2GetTypesPlatform(void) { return fmi2TypesPlatform; }
const char *fmi2GetVersion(void) { return fmi2Version; }

fmi2Status fmi2SetDebugLogging(fmi2Component c, fmi2Boolean loggingOn, size_t nCategories,
                               const fmi2String categories[]) {
    (void)nCategories;
    (void)categories;
    if (c == NULL) return fmi2Error;
    core_of(c)->logging_on = loggingOn ? 1 : 0;
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
#ifdef MODEL_EXCHANGE
    int supported = fmuType == fmi2CoSimulation || fmuType == fmi2ModelExchange;
#else
    int supported = fmuType == fmi2CoSimulation;
#endif
    if (!supported) {
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
    core_init(&inst->core, log_to_fmi2, check_vr, loggingOn);
    inst->core.model_exchange = fmuType == fmi2ModelExchange;
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
    Core *core = core_of(c);
    if (core == NULL) return fmi2Error;
    if (core->mode != MODE_INSTANTIATED)
        return FAIL(c, "fmi2SetupExperiment", "only allowed right after instantiation or reset");
    core->s.time = startTime;
    core->stop_time_defined = stopTimeDefined ? 1 : 0;
    core->stop_time = stopTime;
    return fmi2OK;
}

fmi2Status fmi2EnterInitializationMode(fmi2Component c) {
    Core *core = core_of(c);
    if (core == NULL) return fmi2Error;
    if (core->mode != MODE_INSTANTIATED)
        return FAIL(c, "fmi2EnterInitializationMode", "only allowed after instantiation or reset");
    core->mode = MODE_INITIALIZATION;
    return fmi2OK;
}

fmi2Status fmi2ExitInitializationMode(fmi2Component c) {
    Core *core = core_of(c);
    if (core == NULL) return fmi2Error;
    if (core->mode != MODE_INITIALIZATION)
        return FAIL(c, "fmi2ExitInitializationMode", "not in initialization mode");
    /* Model exchange continues in event mode (the importer calls fmi2NewDiscreteStates). */
    return to_fmi2(core_exit_initialization(core, "fmi2ExitInitializationMode",
                                            core->model_exchange ? MODE_EVENT : MODE_STEP));
}

fmi2Status fmi2Terminate(fmi2Component c) {
    if (c == NULL) return fmi2Error;
    core_of(c)->mode = MODE_TERMINATED;
    return fmi2OK;
}

fmi2Status fmi2Reset(fmi2Component c) {
    if (c == NULL) return fmi2Error;
    core_reset(core_of(c));
    return fmi2OK;
}

/* ---- variable access ------------------------------------------------------ */

static double load_real(const void *v, size_t i) { return ((const fmi2Real *)v)[i]; }
static double load_integer(const void *v, size_t i) { return (double)((const fmi2Integer *)v)[i]; }
static double load_boolean(const void *v, size_t i) {
    return ((const fmi2Boolean *)v)[i] ? 1.0 : 0.0;
}
static void store_real(void *v, size_t i, double x) { ((fmi2Real *)v)[i] = x; }
static void store_integer(void *v, size_t i, double x) { ((fmi2Integer *)v)[i] = (fmi2Integer)x; }
static void store_boolean(void *v, size_t i, double x) {
    ((fmi2Boolean *)v)[i] = x != 0.0 ? fmi2True : fmi2False;
}

#define DEFINE_GET_SET(Suffix, CType, VT, load, store)                                         \
    fmi2Status fmi2Get##Suffix(fmi2Component c, const fmi2ValueReference vr[], size_t nvr,    \
                               CType value[]) {                                              \
        if (core_refresh(core_of(c), "fmi2Get" #Suffix) != MODEL_OK) return fmi2Error;       \
        return to_fmi2(core_get(core_of(c), "fmi2Get" #Suffix, VT, vr, nvr, value, store));   \
    }                                                                                        \
    fmi2Status fmi2Set##Suffix(fmi2Component c, const fmi2ValueReference vr[], size_t nvr,    \
                               const CType value[]) {                                        \
        return to_fmi2(core_set(core_of(c), "fmi2Set" #Suffix, VT, vr, nvr, value, load));    \
    }

DEFINE_GET_SET(Real, fmi2Real, VT_REAL, load_real, store_real)
DEFINE_GET_SET(Integer, fmi2Integer, VT_INTEGER, load_integer, store_integer)
DEFINE_GET_SET(Boolean, fmi2Boolean, VT_BOOLEAN, load_boolean, store_boolean)

fmi2Status fmi2GetString(fmi2Component c, const fmi2ValueReference vr[], size_t nvr,
                         fmi2String value[]) {
    (void)value;
    if (nvr == 0) return fmi2OK;
    return FAIL(c, "fmi2GetString", "this model has no String variables (vr %u)",
                vr ? (unsigned)vr[0] : 0u);
}

fmi2Status fmi2SetString(fmi2Component c, const fmi2ValueReference vr[], size_t nvr,
                         const fmi2String value[]) {
    (void)value;
    if (nvr == 0) return fmi2OK;
    return FAIL(c, "fmi2SetString", "this model has no String variables (vr %u)",
                vr ? (unsigned)vr[0] : 0u);
}

/* ---- FMU state ------------------------------------------------------------- */

fmi2Status fmi2GetFMUstate(fmi2Component c, fmi2FMUstate *FMUstate) {
    return to_fmi2(core_get_state(core_of(c), "fmi2GetFMUstate", FMUstate));
}

fmi2Status fmi2SetFMUstate(fmi2Component c, fmi2FMUstate FMUstate) {
    return to_fmi2(core_set_state(core_of(c), "fmi2SetFMUstate", FMUstate));
}

fmi2Status fmi2FreeFMUstate(fmi2Component c, fmi2FMUstate *FMUstate) {
    (void)c;
    core_free_state(FMUstate);
    return fmi2OK;
}

fmi2Status fmi2SerializedFMUstateSize(fmi2Component c, fmi2FMUstate FMUstate, size_t *size) {
    (void)c;
    (void)FMUstate;
    return to_fmi2(core_serialized_state_size(size));
}

fmi2Status fmi2SerializeFMUstate(fmi2Component c, fmi2FMUstate FMUstate, fmi2Byte bytes[],
                                 size_t size) {
    if (FMUstate == NULL || bytes == NULL) return fmi2Error;
    return to_fmi2(core_serialize_state(core_of(c), "fmi2SerializeFMUstate", &STATE_FORMAT,
                                        FMUstate, bytes, size));
}

fmi2Status fmi2DeSerializeFMUstate(fmi2Component c, const fmi2Byte bytes[], size_t size,
                                   fmi2FMUstate *FMUstate) {
    if (bytes == NULL || FMUstate == NULL) return fmi2Error;
    return to_fmi2(core_deserialize_state(core_of(c), "fmi2DeSerializeFMUstate", &STATE_FORMAT,
                                          bytes, size, FMUstate));
}

/* ---- capabilities this framework does not provide -------------------------- */

fmi2Status fmi2GetDirectionalDerivative(fmi2Component c, const fmi2ValueReference vUnknown_ref[],
                                        size_t nUnknown, const fmi2ValueReference vKnown_ref[],
                                        size_t nKnown, const fmi2Real dvKnown[],
                                        fmi2Real dvUnknown[]) {
    (void)vUnknown_ref; (void)nUnknown; (void)vKnown_ref; (void)nKnown; (void)dvKnown;
    (void)dvUnknown;
    return FAIL(c, "fmi2GetDirectionalDerivative", "not provided");
}

fmi2Status fmi2SetRealInputDerivatives(fmi2Component c, const fmi2ValueReference vr[], size_t nvr,
                                       const fmi2Integer order[], const fmi2Real value[]) {
    (void)vr; (void)nvr; (void)order; (void)value;
    return FAIL(c, "fmi2SetRealInputDerivatives", "inputs are not interpolated");
}

fmi2Status fmi2GetRealOutputDerivatives(fmi2Component c, const fmi2ValueReference vr[],
                                        size_t nvr, const fmi2Integer order[], fmi2Real value[]) {
    (void)vr; (void)nvr; (void)order; (void)value;
    return FAIL(c, "fmi2GetRealOutputDerivatives", "not provided");
}

fmi2Status fmi2CancelStep(fmi2Component c) {
    return FAIL(c, "fmi2CancelStep", "steps are synchronous");
}

/* ---- stepping ------------------------------------------------------------------ */

fmi2Status fmi2DoStep(fmi2Component c, fmi2Real currentCommunicationPoint,
                      fmi2Real communicationStepSize,
                      fmi2Boolean noSetFMUStatePriorToCurrentPoint) {
    (void)noSetFMUStatePriorToCurrentPoint;
    Core *core = core_of(c);
    if (core == NULL) return fmi2Error;
    if (core->model_exchange)
        return FAIL(c, "fmi2DoStep", "this instance was instantiated for model exchange");
    if (core->mode != MODE_STEP)
        return FAIL(c, "fmi2DoStep", "not in step mode (initialization not finished, or an error)");
    return to_fmi2(
        core_do_step(core, "fmi2DoStep", currentCommunicationPoint, communicationStepSize));
}

fmi2Status fmi2GetStatus(fmi2Component c, const fmi2StatusKind s, fmi2Status *value) {
    (void)s;
    (void)value;
    return FAIL(c, "fmi2GetStatus", "steps are synchronous; no pending status");
}

fmi2Status fmi2GetRealStatus(fmi2Component c, const fmi2StatusKind s, fmi2Real *value) {
    if (c == NULL || value == NULL) return fmi2Error;
    if (s != fmi2LastSuccessfulTime) return FAIL(c, "fmi2GetRealStatus", "unsupported status kind");
    *value = core_of(c)->s.time;
    return fmi2OK;
}

fmi2Status fmi2GetIntegerStatus(fmi2Component c, const fmi2StatusKind s, fmi2Integer *value) {
    (void)s;
    (void)value;
    return FAIL(c, "fmi2GetIntegerStatus", "unsupported status kind");
}

fmi2Status fmi2GetBooleanStatus(fmi2Component c, const fmi2StatusKind s, fmi2Boolean *value) {
    if (c == NULL || value == NULL) return fmi2Error;
    if (s != fmi2Terminated) return FAIL(c, "fmi2GetBooleanStatus", "unsupported status kind");
    *value = fmi2False;
    return fmi2OK;
}

fmi2Status fmi2GetStringStatus(fmi2Component c, const fmi2StatusKind s, fmi2String *value) {
    (void)s;
    (void)value;
    return FAIL(c, "fmi2GetStringStatus", "unsupported status kind");
}

/* ---- model exchange (the core's, in FMI 2.0 types) ------------------------------ */

#ifdef MODEL_EXCHANGE

fmi2Status fmi2EnterEventMode(fmi2Component c) {
    if (core_me_check(core_of(c), "fmi2EnterEventMode", MODE_CONTINUOUS, MODE_EVENT) != MODEL_OK)
        return fmi2Error;
    core_of(c)->mode = MODE_EVENT;
    return fmi2OK;
}

fmi2Status fmi2NewDiscreteStates(fmi2Component c, fmi2EventInfo *info) {
    if (info == NULL) return FAIL(c, "fmi2NewDiscreteStates", "eventInfo is NULL");
    int states_changed = 0;
    ModelStatus st = core_event_update(core_of(c), "fmi2NewDiscreteStates", &states_changed);
    if (st >= MODEL_DISCARD) return to_fmi2(st);
    info->newDiscreteStatesNeeded = fmi2False;
    info->terminateSimulation = fmi2False;
    info->nominalsOfContinuousStatesChanged = fmi2False;
    info->valuesOfContinuousStatesChanged = states_changed ? fmi2True : fmi2False;
    info->nextEventTimeDefined = fmi2False;
    info->nextEventTime = 0.0;
    return to_fmi2(st);
}

fmi2Status fmi2EnterContinuousTimeMode(fmi2Component c) {
    if (core_me_check(core_of(c), "fmi2EnterContinuousTimeMode", MODE_EVENT, MODE_EVENT) !=
        MODEL_OK)
        return fmi2Error;
    core_of(c)->mode = MODE_CONTINUOUS;
    return fmi2OK;
}

fmi2Status fmi2CompletedIntegratorStep(fmi2Component c, fmi2Boolean noSetFMUStatePriorToCurrentPoint,
                                       fmi2Boolean *enterEventMode,
                                       fmi2Boolean *terminateSimulation) {
    (void)noSetFMUStatePriorToCurrentPoint;
    if (core_me_check(core_of(c), "fmi2CompletedIntegratorStep", MODE_CONTINUOUS,
                      MODE_CONTINUOUS) != MODEL_OK)
        return fmi2Error;
    if (enterEventMode) *enterEventMode = fmi2False;
    if (terminateSimulation) *terminateSimulation = fmi2False;
    return fmi2OK;
}

fmi2Status fmi2SetTime(fmi2Component c, fmi2Real time) {
    if (core_me_check(core_of(c), "fmi2SetTime", MODE_CONTINUOUS, MODE_EVENT) != MODEL_OK)
        return fmi2Error;
    core_set_time(core_of(c), time);
    return fmi2OK;
}

fmi2Status fmi2SetContinuousStates(fmi2Component c, const fmi2Real x[], size_t nx) {
    return to_fmi2(core_set_states(core_of(c), "fmi2SetContinuousStates", x, nx));
}

fmi2Status fmi2GetContinuousStates(fmi2Component c, fmi2Real x[], size_t nx) {
    return to_fmi2(core_get_states(core_of(c), "fmi2GetContinuousStates", x, nx));
}

fmi2Status fmi2GetNominalsOfContinuousStates(fmi2Component c, fmi2Real x_nominal[], size_t nx) {
    return to_fmi2(core_get_nominals(core_of(c), "fmi2GetNominalsOfContinuousStates", x_nominal,
                                     nx));
}

fmi2Status fmi2GetDerivatives(fmi2Component c, fmi2Real derivatives[], size_t nx) {
    return to_fmi2(core_get_derivatives(core_of(c), "fmi2GetDerivatives", derivatives, nx));
}

fmi2Status fmi2GetEventIndicators(fmi2Component c, fmi2Real eventIndicators[], size_t ni) {
    return to_fmi2(
        core_get_event_indicators(core_of(c), "fmi2GetEventIndicators", eventIndicators, ni));
}

#endif
