/*
 * asset-twin model framework: the FMI 3.0 co-simulation API around a model
 * written against model.h. The same models as fmi2_framework.c, the same rules,
 * from the same core (framework_core.c): type and bound checks where a refused
 * call changes nothing, fixed parameters refused once initialization has
 * ended, model_initialize() when it ends and model_do_step() per step. This
 * file translates FMI 3.0 types and statuses to the core.
 *
 * Types: VT_REAL is Float64, VT_INTEGER is Int32, except Enumerations, which
 * FMI 3.0 reads and sets as Int64 (MODEL_VAR_IS_ENUMERATION, generated), and
 * VT_BOOLEAN is Boolean. Value references are the table's; the independent
 * variable time that FMI 3.0 requires has the next one, N_VARS.
 *
 * Event mode is supported because it is trivial here: these models have no
 * events in co-simulation, so fmi3UpdateDiscreteStates has nothing to update.
 * A table with a model_exchange section (MODEL_EXCHANGE) gets FMI 3.0 model
 * exchange from the core as well, as fmi2_framework.c does. Everything else
 * (scheduled execution, clocks, other types, derivatives) returns fmi3Error
 * with a message naming the function.
 */
#include <stdlib.h>
#include <string.h>

#include "fmi3Functions.h"
#include "framework_core.h"
#include "model_vars_fmi3.h" /* generated: MODEL_VAR_IS_ENUMERATION[N_VARS] */

#define VR_TIME ((fmi3ValueReference)N_VARS)

typedef struct {
    Core core; /* first: an fmi3Instance is also a Core pointer */
    int event_mode_used;
    fmi3LogMessageCallback logger;
    fmi3InstanceEnvironment env;
} Instance;

/* The mode numbers changed when the core took over (MODE_EVENT moved), so
 * the magic did too: a state saved by an older build is refused, not misread. */
static const StateFormat STATE_FORMAT = {"ATWIN3S2", "FMI 3.0 "};

/* The FMI 3.0 access types of this framework. */
typedef enum { K_FLOAT64, K_INT32, K_INT64, K_BOOLEAN } Kind;
static const char *const KIND_NAMES[] = {"Float64", "Int32", "Int64 (Enumeration)", "Boolean"};

/* ModelStatus has the numbers of fmi3Status (fmi3Fatal is never returned). */
static fmi3Status to_fmi3(ModelStatus st) { return (fmi3Status)st; }

static Core *core_of(fmi3Instance instance) { return (Core *)instance; }

#define FAIL(instance, ...) to_fmi3(core_fail(core_of(instance), __VA_ARGS__))

static fmi3Status not_supported(fmi3Instance instance, const char *function) {
    return FAIL(instance, function, "not supported");
}

static void log_to_fmi3(const Core *core, ModelStatus status, const char *category,
                        const char *message) {
    const Instance *inst = (const Instance *)core;
    /* FMI 3.0 messages are plain text, not printf formats. */
    if (inst->logger) inst->logger(inst->env, to_fmi3(status), category, message);
}

static Kind kind_of(unsigned int vr) {
    switch (MODEL_VARS[vr].type) {
    case VT_REAL: return K_FLOAT64;
    case VT_BOOLEAN: return K_BOOLEAN;
    default: return MODEL_VAR_IS_ENUMERATION[vr] ? K_INT64 : K_INT32;
    }
}

/* type is a Kind. Float64 reads of time never get here: fmi3GetFloat64 answers them. */
static ModelStatus check_vr(const Core *core, const char *function, unsigned int vr, int type,
                            int writing) {
    if (writing && vr == VR_TIME)
        return core_fail(core, function, "time (value reference %u) is the independent "
                         "variable and cannot be set", (unsigned)VR_TIME);
    if (vr == VR_TIME)
        return core_fail(core, function, "time (value reference %u) is of type Float64, not %s",
                         vr, KIND_NAMES[type]);
    if (vr > VR_TIME)
        return core_fail(core, function,
                         "value reference %u does not exist (this model has 0 to %u)", vr,
                         (unsigned)VR_TIME);
    if ((int)kind_of(vr) != type)
        return core_fail(core, function, "variable %s (value reference %u) is of type %s, not %s",
                         MODEL_VARS[vr].name, vr, KIND_NAMES[kind_of(vr)], KIND_NAMES[type]);
    return MODEL_OK;
}

/* ---- common functions -------------------------------------------------- */

const char *fmi3GetVersion(void) { return fmi3Version; }

fmi3Status fmi3SetDebugLogging(fmi3Instance instance, fmi3Boolean loggingOn, size_t nCategories,
                               const fmi3String categories[]) {
    (void)nCategories;
    (void)categories;
    if (instance == NULL) return fmi3Error;
    core_of(instance)->logging_on = loggingOn ? 1 : 0;
    return fmi3OK;
}

static Instance *new_instance(fmi3InstanceEnvironment env, fmi3LogMessageCallback logger,
                              fmi3Boolean logging_on) {
    Instance *inst = (Instance *)calloc(1, sizeof(Instance));
    if (inst == NULL) return NULL;
    inst->logger = logger;
    inst->env = env;
    core_init(&inst->core, log_to_fmi3, check_vr, logging_on);
    return inst;
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
    /* Logs the refusals below, before there is an instance. */
    Instance probe;
    memset(&probe, 0, sizeof probe);
    probe.logger = logMessage;
    probe.env = instanceEnvironment;
    probe.core.log = log_to_fmi3;
    if (instantiationToken == NULL || strcmp(instantiationToken, MODEL_GUID) != 0) {
        FAIL(&probe, "fmi3InstantiateCoSimulation",
             "instantiation token %s does not match this binary's %s",
             instantiationToken ? instantiationToken : "(null)", MODEL_GUID);
        return NULL;
    }
    if (nRequiredIntermediateVariables > 0) {
        FAIL(&probe, "fmi3InstantiateCoSimulation",
             "%s has no intermediate-update variables, %zu requested", MODEL_NAME,
             nRequiredIntermediateVariables);
        return NULL;
    }
    Instance *inst = new_instance(instanceEnvironment, logMessage, loggingOn);
    if (inst != NULL) inst->event_mode_used = eventModeUsed ? 1 : 0;
    return inst;
}

fmi3Instance fmi3InstantiateModelExchange(fmi3String instanceName,
                                          fmi3String instantiationToken,
                                          fmi3String resourcePath, fmi3Boolean visible,
                                          fmi3Boolean loggingOn,
                                          fmi3InstanceEnvironment instanceEnvironment,
                                          fmi3LogMessageCallback logMessage) {
    (void)instanceName; (void)resourcePath; (void)visible;
#ifdef MODEL_EXCHANGE
    Instance probe;
    memset(&probe, 0, sizeof probe);
    probe.logger = logMessage;
    probe.env = instanceEnvironment;
    probe.core.log = log_to_fmi3;
    if (instantiationToken == NULL || strcmp(instantiationToken, MODEL_GUID) != 0) {
        FAIL(&probe, "fmi3InstantiateModelExchange",
             "instantiation token %s does not match this binary's %s",
             instantiationToken ? instantiationToken : "(null)", MODEL_GUID);
        return NULL;
    }
    Instance *inst = new_instance(instanceEnvironment, logMessage, loggingOn);
    if (inst != NULL) inst->core.model_exchange = 1;
    return inst;
#else
    (void)instantiationToken; (void)loggingOn;
    if (logMessage)
        logMessage(instanceEnvironment, fmi3Error, "logStatusError",
                   "fmi3InstantiateModelExchange: not supported (co-simulation only)");
    return NULL;
#endif
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
    Core *core = core_of(instance);
    if (core == NULL) return fmi3Error;
    if (core->mode != MODE_INSTANTIATED)
        return FAIL(instance, "fmi3EnterInitializationMode",
                    "only allowed after instantiation or reset");
    if (stopTimeDefined && stopTime < startTime)
        return FAIL(instance, "fmi3EnterInitializationMode",
                    "stop time %g is before the start time %g", stopTime, startTime);
    core->s.time = startTime;
    core->stop_time_defined = stopTimeDefined ? 1 : 0;
    core->stop_time = stopTime;
    core->mode = MODE_INITIALIZATION;
    return fmi3OK;
}

fmi3Status fmi3ExitInitializationMode(fmi3Instance instance) {
    Instance *inst = (Instance *)instance;
    if (inst == NULL) return fmi3Error;
    if (inst->core.mode != MODE_INITIALIZATION)
        return FAIL(instance, "fmi3ExitInitializationMode", "not in initialization mode");
    /* Model exchange continues in event mode, as co-simulation with event mode does. */
    int event_mode = inst->event_mode_used || inst->core.model_exchange;
    return to_fmi3(core_exit_initialization(&inst->core, "fmi3ExitInitializationMode",
                                            event_mode ? MODE_EVENT : MODE_STEP));
}

fmi3Status fmi3EnterEventMode(fmi3Instance instance) {
    Instance *inst = (Instance *)instance;
    if (inst == NULL) return fmi3Error;
    if (inst->core.model_exchange) {
        if (inst->core.mode != MODE_CONTINUOUS && inst->core.mode != MODE_EVENT)
            return FAIL(instance, "fmi3EnterEventMode", "not in continuous-time or event mode");
        inst->core.mode = MODE_EVENT;
        return fmi3OK;
    }
    if (!inst->event_mode_used)
        return FAIL(instance, "fmi3EnterEventMode", "instantiated with eventModeUsed = false");
    if (inst->core.mode != MODE_STEP)
        return FAIL(instance, "fmi3EnterEventMode", "not in step mode");
    inst->core.mode = MODE_EVENT;
    return fmi3OK;
}

fmi3Status fmi3UpdateDiscreteStates(fmi3Instance instance, fmi3Boolean *discreteStatesNeedUpdate,
                                    fmi3Boolean *terminateSimulation,
                                    fmi3Boolean *nominalsOfContinuousStatesChanged,
                                    fmi3Boolean *valuesOfContinuousStatesChanged,
                                    fmi3Boolean *nextEventTimeDefined,
                                    fmi3Float64 *nextEventTime) {
    Core *core = core_of(instance);
    if (core == NULL) return fmi3Error;
    if (core->mode != MODE_EVENT)
        return FAIL(instance, "fmi3UpdateDiscreteStates", "not in event mode");
    int states_changed = 0;
#ifdef MODEL_EXCHANGE
    if (core->model_exchange) {
        ModelStatus st = core_event_update(core, "fmi3UpdateDiscreteStates", &states_changed);
        if (st >= MODEL_DISCARD) return to_fmi3(st);
    }
#endif
    /* Co-simulation: no discrete states and no time events, nothing to update, ever. */
    if (discreteStatesNeedUpdate) *discreteStatesNeedUpdate = fmi3False;
    if (terminateSimulation) *terminateSimulation = fmi3False;
    if (nominalsOfContinuousStatesChanged) *nominalsOfContinuousStatesChanged = fmi3False;
    if (valuesOfContinuousStatesChanged)
        *valuesOfContinuousStatesChanged = states_changed ? fmi3True : fmi3False;
    if (nextEventTimeDefined) *nextEventTimeDefined = fmi3False;
    if (nextEventTime) *nextEventTime = 0.0;
    return fmi3OK;
}

fmi3Status fmi3EnterStepMode(fmi3Instance instance) {
    Core *core = core_of(instance);
    if (core == NULL) return fmi3Error;
    if (core->model_exchange)
        return FAIL(instance, "fmi3EnterStepMode", "this instance was instantiated for model "
                    "exchange");
    if (core->mode != MODE_EVENT) return FAIL(instance, "fmi3EnterStepMode", "not in event mode");
    core->mode = MODE_STEP;
    return fmi3OK;
}

fmi3Status fmi3Terminate(fmi3Instance instance) {
    if (instance == NULL) return fmi3Error;
    core_of(instance)->mode = MODE_TERMINATED;
    return fmi3OK;
}

fmi3Status fmi3Reset(fmi3Instance instance) {
    if (instance == NULL) return fmi3Error;
    core_reset(core_of(instance));
    return fmi3OK;
}

/* ---- variable access ------------------------------------------------------ */

/* Every variable here is a scalar: one value per value reference. NULL
 * arguments are refused first, without a message, as the core does. */
static fmi3Status check_counts(fmi3Instance instance, const char *function,
                               const fmi3ValueReference vr[], size_t nvr, const void *values,
                               size_t nValues) {
    if (instance == NULL || (nvr > 0 && (vr == NULL || values == NULL))) return fmi3Error;
    if (nValues != nvr)
        return FAIL(instance, function, "%zu values for %zu value references (all variables are "
                    "scalars)", nValues, nvr);
    return fmi3OK;
}

fmi3Status fmi3GetFloat64(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                          size_t nValueReferences, fmi3Float64 values[], size_t nValues) {
    Core *core = core_of(instance);
    if (check_counts(instance, "fmi3GetFloat64", valueReferences, nValueReferences, values,
                     nValues) != fmi3OK ||
        core_refresh(core, "fmi3GetFloat64") != MODEL_OK)
        return fmi3Error;
    for (size_t i = 0; i < nValueReferences; i++) {
        if (valueReferences[i] == VR_TIME) {
            values[i] = core->s.time;
            continue;
        }
        if (check_vr(core, "fmi3GetFloat64", valueReferences[i], K_FLOAT64, 0) != MODEL_OK)
            return fmi3Error;
        values[i] = core->s.v[valueReferences[i]];
    }
    return fmi3OK;
}

static double load_float64(const void *v, size_t i) { return ((const fmi3Float64 *)v)[i]; }
static double load_int32(const void *v, size_t i) { return (double)((const fmi3Int32 *)v)[i]; }
static double load_int64(const void *v, size_t i) { return (double)((const fmi3Int64 *)v)[i]; }
static double load_boolean(const void *v, size_t i) {
    return ((const fmi3Boolean *)v)[i] ? 1.0 : 0.0;
}
static void store_int32(void *v, size_t i, double x) { ((fmi3Int32 *)v)[i] = (fmi3Int32)x; }
static void store_int64(void *v, size_t i, double x) { ((fmi3Int64 *)v)[i] = (fmi3Int64)x; }
static void store_boolean(void *v, size_t i, double x) {
    ((fmi3Boolean *)v)[i] = x != 0.0 ? fmi3True : fmi3False;
}

#define DEFINE_SET(Suffix, CType, KIND, load)                                                 \
    fmi3Status fmi3Set##Suffix(fmi3Instance instance, const fmi3ValueReference vr[], size_t nvr, \
                               const CType values[], size_t nValues) {                       \
        const char *function = "fmi3Set" #Suffix;                                            \
        if (check_counts(instance, function, vr, nvr, values, nValues) != fmi3OK)            \
            return fmi3Error;                                                                \
        return to_fmi3(core_set(core_of(instance), function, KIND, vr, nvr, values, load));  \
    }

#define DEFINE_GET(Suffix, CType, KIND, store)                                                \
    fmi3Status fmi3Get##Suffix(fmi3Instance instance, const fmi3ValueReference vr[], size_t nvr, \
                               CType values[], size_t nValues) {                             \
        const char *function = "fmi3Get" #Suffix;                                            \
        if (check_counts(instance, function, vr, nvr, values, nValues) != fmi3OK ||          \
            core_refresh(core_of(instance), function) != MODEL_OK)                           \
            return fmi3Error;                                                                \
        return to_fmi3(core_get(core_of(instance), function, KIND, vr, nvr, values, store)); \
    }

DEFINE_SET(Float64, fmi3Float64, K_FLOAT64, load_float64)
DEFINE_GET(Int32, fmi3Int32, K_INT32, store_int32)
DEFINE_SET(Int32, fmi3Int32, K_INT32, load_int32)
DEFINE_GET(Int64, fmi3Int64, K_INT64, store_int64)
DEFINE_SET(Int64, fmi3Int64, K_INT64, load_int64)
DEFINE_GET(Boolean, fmi3Boolean, K_BOOLEAN, store_boolean)
DEFINE_SET(Boolean, fmi3Boolean, K_BOOLEAN, load_boolean)

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
    return to_fmi3(core_get_state(core_of(instance), "fmi3GetFMUState", FMUState));
}

fmi3Status fmi3SetFMUState(fmi3Instance instance, fmi3FMUState FMUState) {
    return to_fmi3(core_set_state(core_of(instance), "fmi3SetFMUState", FMUState));
}

fmi3Status fmi3FreeFMUState(fmi3Instance instance, fmi3FMUState *FMUState) {
    (void)instance;
    core_free_state(FMUState);
    return fmi3OK;
}

fmi3Status fmi3SerializedFMUStateSize(fmi3Instance instance, fmi3FMUState FMUState,
                                      size_t *size) {
    (void)instance;
    (void)FMUState;
    return to_fmi3(core_serialized_state_size(size));
}

fmi3Status fmi3SerializeFMUState(fmi3Instance instance, fmi3FMUState FMUState,
                                 fmi3Byte serializedState[], size_t size) {
    if (FMUState == NULL || serializedState == NULL)
        return FAIL(instance, "fmi3SerializeFMUState", "state or buffer is NULL");
    return to_fmi3(core_serialize_state(core_of(instance), "fmi3SerializeFMUState",
                                        &STATE_FORMAT, FMUState, serializedState, size));
}

fmi3Status fmi3DeserializeFMUState(fmi3Instance instance, const fmi3Byte serializedState[],
                                   size_t size, fmi3FMUState *FMUState) {
    if (serializedState == NULL || FMUState == NULL)
        return FAIL(instance, "fmi3DeserializeFMUState", "buffer or state pointer is NULL");
    return to_fmi3(core_deserialize_state(core_of(instance), "fmi3DeserializeFMUState",
                                          &STATE_FORMAT, serializedState, size, FMUState));
}

/* ---- stepping ------------------------------------------------------------------ */

fmi3Status fmi3DoStep(fmi3Instance instance, fmi3Float64 currentCommunicationPoint,
                      fmi3Float64 communicationStepSize,
                      fmi3Boolean noSetFMUStatePriorToCurrentPoint,
                      fmi3Boolean *eventHandlingNeeded, fmi3Boolean *terminateSimulation,
                      fmi3Boolean *earlyReturn, fmi3Float64 *lastSuccessfulTime) {
    (void)noSetFMUStatePriorToCurrentPoint;
    Core *core = core_of(instance);
    if (core == NULL) return fmi3Error;
    /* No events, no early return, never a request to stop. */
    if (eventHandlingNeeded) *eventHandlingNeeded = fmi3False;
    if (terminateSimulation) *terminateSimulation = fmi3False;
    if (earlyReturn) *earlyReturn = fmi3False;
    if (lastSuccessfulTime) *lastSuccessfulTime = core->s.time;
    if (core->model_exchange)
        return FAIL(instance, "fmi3DoStep", "this instance was instantiated for model exchange");
    if (core->mode != MODE_STEP)
        return FAIL(instance, "fmi3DoStep", "not in step mode (initialization not finished, event "
                    "mode, or an error)");
    ModelStatus st =
        core_do_step(core, "fmi3DoStep", currentCommunicationPoint, communicationStepSize);
    /* The model time moves only when the model stepped, even if it failed. */
    if (lastSuccessfulTime) *lastSuccessfulTime = core->s.time;
    return to_fmi3(st);
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

/* Model exchange (the core's, in FMI 3.0 types; not supported without MODEL_EXCHANGE) */

#ifdef MODEL_EXCHANGE

fmi3Status fmi3EnterContinuousTimeMode(fmi3Instance instance) {
    if (core_me_check(core_of(instance), "fmi3EnterContinuousTimeMode", MODE_EVENT,
                      MODE_EVENT) != MODEL_OK)
        return fmi3Error;
    core_of(instance)->mode = MODE_CONTINUOUS;
    return fmi3OK;
}

fmi3Status fmi3CompletedIntegratorStep(fmi3Instance instance,
                                       fmi3Boolean noSetFMUStatePriorToCurrentPoint,
                                       fmi3Boolean *enterEventMode,
                                       fmi3Boolean *terminateSimulation) {
    (void)noSetFMUStatePriorToCurrentPoint;
    if (core_me_check(core_of(instance), "fmi3CompletedIntegratorStep", MODE_CONTINUOUS,
                      MODE_CONTINUOUS) != MODEL_OK)
        return fmi3Error;
    if (enterEventMode) *enterEventMode = fmi3False;
    if (terminateSimulation) *terminateSimulation = fmi3False;
    return fmi3OK;
}

fmi3Status fmi3SetTime(fmi3Instance instance, fmi3Float64 time) {
    if (core_me_check(core_of(instance), "fmi3SetTime", MODE_CONTINUOUS, MODE_EVENT) != MODEL_OK)
        return fmi3Error;
    core_set_time(core_of(instance), time);
    return fmi3OK;
}

fmi3Status fmi3SetContinuousStates(fmi3Instance instance, const fmi3Float64 continuousStates[],
                                   size_t nContinuousStates) {
    return to_fmi3(core_set_states(core_of(instance), "fmi3SetContinuousStates",
                                   continuousStates, nContinuousStates));
}

fmi3Status fmi3GetContinuousStateDerivatives(fmi3Instance instance, fmi3Float64 derivatives[],
                                             size_t nContinuousStates) {
    return to_fmi3(core_get_derivatives(core_of(instance), "fmi3GetContinuousStateDerivatives",
                                        derivatives, nContinuousStates));
}

fmi3Status fmi3GetEventIndicators(fmi3Instance instance, fmi3Float64 eventIndicators[],
                                  size_t nEventIndicators) {
    return to_fmi3(core_get_event_indicators(core_of(instance), "fmi3GetEventIndicators",
                                             eventIndicators, nEventIndicators));
}

fmi3Status fmi3GetContinuousStates(fmi3Instance instance, fmi3Float64 continuousStates[],
                                   size_t nContinuousStates) {
    return to_fmi3(core_get_states(core_of(instance), "fmi3GetContinuousStates",
                                   continuousStates, nContinuousStates));
}

fmi3Status fmi3GetNominalsOfContinuousStates(fmi3Instance instance, fmi3Float64 nominals[],
                                             size_t nContinuousStates) {
    return to_fmi3(core_get_nominals(core_of(instance), "fmi3GetNominalsOfContinuousStates",
                                     nominals, nContinuousStates));
}

fmi3Status fmi3GetNumberOfEventIndicators(fmi3Instance instance, size_t *nEventIndicators) {
    if (instance == NULL || nEventIndicators == NULL) return fmi3Error;
    *nEventIndicators = N_EVENT_INDICATORS;
    return fmi3OK;
}

fmi3Status fmi3GetNumberOfContinuousStates(fmi3Instance instance, size_t *nContinuousStates) {
    if (instance == NULL || nContinuousStates == NULL) return fmi3Error;
    *nContinuousStates = N_STATES;
    return fmi3OK;
}

#else

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

#endif

/* Scheduled execution */

fmi3Status fmi3ActivateModelPartition(fmi3Instance instance, fmi3ValueReference clockReference,
                                      fmi3Float64 activationTime) {
    (void)clockReference; (void)activationTime;
    return not_supported(instance, "fmi3ActivateModelPartition");
}
