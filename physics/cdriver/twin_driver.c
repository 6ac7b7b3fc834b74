/*
 * asset-twin native driver: runs any FMI 2.0 or 3.0 co-simulation FMU binary
 * through its function pointers and reduces the outputs at every step, so a run
 * costs one call from Python instead of one per step. The calls that differ
 * between the two standards go through the drv_* wrappers below.
 *
 * Sampling follows physics/fmu/_adapter.py exactly: communication points
 * t_i = i * step, the last step shortened to land on the stop time, a sample
 * after initialization and after every `every`-th step and the last one. The
 * reductions follow physics/kpi.py (trapezoid integral, time above a limit with
 * crossings by linear interpolation).
 */
#include <dlfcn.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fmi2Functions.h"
#include "fmi3Functions.h"

#define EXPORT __attribute__((visibility("default")))

/* FMI 3: Float64, Int32, Boolean; KIND_INT64 for Int64 and Enumeration start values. */
enum { KIND_REAL = 0, KIND_INTEGER = 1, KIND_BOOLEAN = 2, KIND_INT64 = 3 };
enum { RED_FINAL, RED_MAX, RED_MIN, RED_MAX_ABS, RED_MEAN, RED_INTEGRAL, RED_TIME_ABOVE };
enum { RUN_OK = 0, RUN_ERROR = 1, RUN_NAN = 2 };
/* Which call failed; the order matches _FUNCTIONS in physics/fmu/_native.py. */
enum { FAIL_RESET, FAIL_SETUP, FAIL_ENTER, FAIL_SET, FAIL_EXIT, FAIL_STEP, FAIL_GET };

typedef struct {
    void *lib;
    fmi2InstantiateTYPE *instantiate;
    fmi2FreeInstanceTYPE *free_instance;
    fmi2SetupExperimentTYPE *setup_experiment;
    fmi2EnterInitializationModeTYPE *enter_init;
    fmi2ExitInitializationModeTYPE *exit_init;
    fmi2ResetTYPE *reset;
    fmi2TerminateTYPE *terminate;
    fmi2SetRealTYPE *set_real;
    fmi2SetIntegerTYPE *set_integer;
    fmi2SetBooleanTYPE *set_boolean;
    fmi2GetRealTYPE *get_real;
    fmi2GetIntegerTYPE *get_integer;
    fmi2GetBooleanTYPE *get_boolean;
    fmi2DoStepTYPE *do_step;
    fmi2Component c;
    fmi2CallbackFunctions callbacks;
    int fmi3; /* which of the two sets of pointers is used */
    fmi3InstantiateCoSimulationTYPE *instantiate3;
    fmi3FreeInstanceTYPE *free_instance3;
    fmi3EnterInitializationModeTYPE *enter_init3;
    fmi3ExitInitializationModeTYPE *exit_init3;
    fmi3ResetTYPE *reset3;
    fmi3SetFloat64TYPE *set_f64;
    fmi3SetInt32TYPE *set_i32;
    fmi3SetInt64TYPE *set_i64;
    fmi3SetBooleanTYPE *set_bool3;
    fmi3GetFloat64TYPE *get_f64;
    fmi3GetInt32TYPE *get_i32;
    fmi3GetBooleanTYPE *get_bool3;
    fmi3DoStepTYPE *do_step3;
    fmi3Instance c3;
    int needs_reset;
    char log[1024]; /* the FMU's last warning or error message */
} Driver;

static void logger(fmi2ComponentEnvironment env, fmi2String instance, fmi2Status status,
                   fmi2String category, fmi2String message, ...) {
    (void)instance;
    (void)category;
    Driver *d = (Driver *)env;
    if (d == NULL || status == fmi2OK || message == NULL) return;
    va_list ap;
    va_start(ap, message);
    vsnprintf(d->log, sizeof d->log, message, ap);
    va_end(ap);
}

static void logger3(fmi3InstanceEnvironment env, fmi3Status status, fmi3String category,
                    fmi3String message) {
    (void)category;
    Driver *d = (Driver *)env;
    if (d == NULL || status == fmi3OK || message == NULL) return;
    snprintf(d->log, sizeof d->log, "%s", message);
}

static void *alloc_memory(size_t n, size_t size) { return calloc(n, size); }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define LOAD(field, name)                                                              \
    d->field = (name##TYPE *)dlsym(d->lib, #name);                                     \
    if (d->field == NULL) {                                                            \
        snprintf(err, errlen, "%s does not export %s", library, #name);                \
        twd_close(d);                                                                  \
        return NULL;                                                                   \
    }

EXPORT void twd_close(Driver *d) {
    if (d == NULL) return;
    if (d->c != NULL && d->free_instance != NULL) d->free_instance(d->c);
    if (d->c3 != NULL && d->free_instance3 != NULL) d->free_instance3(d->c3);
    if (d->lib != NULL) dlclose(d->lib);
    free(d);
}

/* resource: the resources folder as a file URI (FMI 2.0) or a path ending in / (3.0). */
EXPORT Driver *twd_open(const char *library, const char *guid, const char *instance,
                        const char *resource, int fmi3, char *err, size_t errlen) {
    Driver *d = (Driver *)calloc(1, sizeof(Driver));
    if (d == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    d->lib = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    if (d->lib == NULL) {
        snprintf(err, errlen, "cannot load %s: %s", library, dlerror());
        free(d);
        return NULL;
    }
    d->fmi3 = fmi3;
    if (fmi3) {
        LOAD(instantiate3, fmi3InstantiateCoSimulation)
        LOAD(free_instance3, fmi3FreeInstance)
        LOAD(enter_init3, fmi3EnterInitializationMode)
        LOAD(exit_init3, fmi3ExitInitializationMode)
        LOAD(reset3, fmi3Reset)
        LOAD(set_f64, fmi3SetFloat64)
        LOAD(set_i32, fmi3SetInt32)
        LOAD(set_i64, fmi3SetInt64)
        LOAD(set_bool3, fmi3SetBoolean)
        LOAD(get_f64, fmi3GetFloat64)
        LOAD(get_i32, fmi3GetInt32)
        LOAD(get_bool3, fmi3GetBoolean)
        LOAD(do_step3, fmi3DoStep)
        d->c3 = d->instantiate3(instance, guid, resource, fmi3False, fmi3False, fmi3False,
                                fmi3False, NULL, 0, d, logger3, NULL);
        if (d->c3 == NULL) {
            snprintf(err, errlen, "fmi3InstantiateCoSimulation failed%s%s", d->log[0] ? ": " : "",
                     d->log);
            twd_close(d);
            return NULL;
        }
        return d;
    }
    LOAD(instantiate, fmi2Instantiate)
    LOAD(free_instance, fmi2FreeInstance)
    LOAD(setup_experiment, fmi2SetupExperiment)
    LOAD(enter_init, fmi2EnterInitializationMode)
    LOAD(exit_init, fmi2ExitInitializationMode)
    LOAD(reset, fmi2Reset)
    LOAD(terminate, fmi2Terminate)
    LOAD(set_real, fmi2SetReal)
    LOAD(set_integer, fmi2SetInteger)
    LOAD(set_boolean, fmi2SetBoolean)
    LOAD(get_real, fmi2GetReal)
    LOAD(get_integer, fmi2GetInteger)
    LOAD(get_boolean, fmi2GetBoolean)
    LOAD(do_step, fmi2DoStep)
    d->callbacks.logger = logger;
    d->callbacks.allocateMemory = alloc_memory;
    d->callbacks.freeMemory = free;
    d->callbacks.componentEnvironment = d;
    d->c = d->instantiate(instance, fmi2CoSimulation, guid, resource, &d->callbacks,
                          fmi2False, fmi2False);
    if (d->c == NULL) {
        snprintf(err, errlen, "fmi2Instantiate failed%s%s", d->log[0] ? ": " : "", d->log);
        twd_close(d);
        return NULL;
    }
    return d;
}

/* Running reduction of one output over its samples. */
typedef struct {
    double first_t, prev_t, prev_y, last, max, min, max_abs, integral, above;
    long n;
} Acc;

static void acc_add(Acc *a, double t, double y, double limit) {
    if (a->n == 0) {
        a->first_t = t;
        a->max = a->min = y;
        a->max_abs = fabs(y);
    } else {
        double dt = t - a->prev_t, p = a->prev_y - limit, q = y - limit;
        a->integral += dt * (y + a->prev_y) / 2.0;
        if (p > 0 && q > 0) a->above += dt;
        else if (p > 0 && q <= 0) a->above += dt * (p / (p - q));
        else if (p <= 0 && q > 0) a->above += dt * (q / (q - p));
        if (y > a->max) a->max = y;
        if (y < a->min) a->min = y;
        if (fabs(y) > a->max_abs) a->max_abs = fabs(y);
    }
    a->prev_t = t;
    a->prev_y = y;
    a->last = y;
    a->n++;
}

static double acc_value(const Acc *a, int red) {
    switch (red) {
        case RED_FINAL: return a->last;
        case RED_MAX: return a->max;
        case RED_MIN: return a->min;
        case RED_MAX_ABS: return a->max_abs;
        case RED_INTEGRAL: return a->integral;
        case RED_MEAN: return a->n == 1 ? a->last : a->integral / (a->prev_t - a->first_t);
        case RED_TIME_ABOVE: return a->above;
        default: return NAN;
    }
}

/* The calls that differ between FMI 2.0 and 3.0; statuses compare alike (OK 0, Warning 1,
 * Discard 2, Error 3, Fatal 4). */
static int drv_reset(Driver *d) { return d->fmi3 ? (int)d->reset3(d->c3) : (int)d->reset(d->c); }

static int drv_enter_init(Driver *d, double start, double stop) {
    if (d->fmi3) return (int)d->enter_init3(d->c3, fmi3False, 0.0, start, fmi3True, stop);
    int s = (int)d->setup_experiment(d->c, fmi2False, 0.0, start, fmi2True, stop);
    return s > fmi2Warning ? s : (int)d->enter_init(d->c);
}

static int drv_exit_init(Driver *d) {
    return d->fmi3 ? (int)d->exit_init3(d->c3) : (int)d->exit_init(d->c);
}

/* One step; *terminate is set when an FMI 3.0 FMU asks to stop. */
static int drv_do_step(Driver *d, double t, double h, int *terminate) {
    if (!d->fmi3) return (int)d->do_step(d->c, t, h, fmi2True);
    fmi3Boolean event = fmi3False, stop = fmi3False, early = fmi3False;
    fmi3Float64 last = t;
    int s = (int)d->do_step3(d->c3, t, h, fmi3True, &event, &stop, &early, &last);
    *terminate = stop ? 1 : 0;
    return s;
}

static int set_start(Driver *d, size_t n, const unsigned *vr, const int *kind,
                     const double *val) {
    for (size_t i = 0; i < n; i++) {
        int s;
        if (d->fmi3) {
            fmi3ValueReference r = vr[i];
            if (kind[i] == KIND_REAL) {
                fmi3Float64 x = val[i];
                s = (int)d->set_f64(d->c3, &r, 1, &x, 1);
            } else if (kind[i] == KIND_INTEGER) {
                fmi3Int32 x = (fmi3Int32)val[i];
                s = (int)d->set_i32(d->c3, &r, 1, &x, 1);
            } else if (kind[i] == KIND_INT64) {
                fmi3Int64 x = (fmi3Int64)val[i];
                s = (int)d->set_i64(d->c3, &r, 1, &x, 1);
            } else {
                fmi3Boolean x = val[i] != 0.0;
                s = (int)d->set_bool3(d->c3, &r, 1, &x, 1);
            }
        } else {
            fmi2ValueReference r = vr[i];
            if (kind[i] == KIND_REAL) {
                fmi2Real x = val[i];
                s = (int)d->set_real(d->c, &r, 1, &x);
            } else if (kind[i] == KIND_INTEGER) {
                fmi2Integer x = (fmi2Integer)val[i];
                s = (int)d->set_integer(d->c, &r, 1, &x);
            } else {
                fmi2Boolean x = val[i] != 0.0 ? fmi2True : fmi2False;
                s = (int)d->set_boolean(d->c, &r, 1, &x);
            }
        }
        if (s > fmi2Warning) return s;
    }
    return fmi2OK;
}

/* Read the outputs into y (as doubles), grouped by kind with one call each. ibuf and
 * bbuf are scratch space for n_int integers and n_bool booleans of either standard. */
static int sample(Driver *d, size_t n_real, const unsigned *real_vr, size_t n_int,
                  const unsigned *int_vr, size_t n_bool, const unsigned *bool_vr, double *y,
                  fmi2Integer *ibuf, fmi2Boolean *bbuf) {
    int s = fmi2OK;
    if (d->fmi3) {
        fmi3Boolean *b3 = (fmi3Boolean *)bbuf; /* fmi3Boolean (bool) is no wider than int */
        if (n_real) s = (int)d->get_f64(d->c3, real_vr, n_real, y, n_real);
        if (s > fmi2Warning) return s;
        if (n_int) s = (int)d->get_i32(d->c3, int_vr, n_int, (fmi3Int32 *)ibuf, n_int);
        if (s > fmi2Warning) return s;
        if (n_bool) s = (int)d->get_bool3(d->c3, bool_vr, n_bool, b3, n_bool);
        if (s > fmi2Warning) return s;
        for (size_t i = 0; i < n_int; i++) y[n_real + i] = (double)((fmi3Int32 *)ibuf)[i];
        for (size_t i = 0; i < n_bool; i++) y[n_real + n_int + i] = b3[i] ? 1.0 : 0.0;
        return fmi2OK;
    }
    if (n_real) s = (int)d->get_real(d->c, real_vr, n_real, y);
    if (s > fmi2Warning) return s;
    if (n_int) s = (int)d->get_integer(d->c, int_vr, n_int, ibuf);
    if (s > fmi2Warning) return s;
    if (n_bool) s = (int)d->get_boolean(d->c, bool_vr, n_bool, bbuf);
    if (s > fmi2Warning) return s;
    for (size_t i = 0; i < n_int; i++) y[n_real + i] = (double)ibuf[i];
    for (size_t i = 0; i < n_bool; i++) y[n_real + n_int + i] = bbuf[i] ? 1.0 : 0.0;
    return fmi2OK;
}

/*
 * One run. Outputs are given grouped: the first n_real are Real, then n_int
 * Integer, then n_bool Boolean value references; kpi_out indexes into that
 * order. samples (may be NULL) receives rows of [t, y_0 .. y_{n-1}].
 * Returns RUN_OK, RUN_ERROR (message in err, the failing call in *fail_function)
 * or RUN_NAN (*fail_output, *fail_time).
 */
EXPORT int twd_run(Driver *d, size_t n_start, const unsigned *start_vr, const int *start_kind,
                   const double *start_val, double start_time, double stop_time, double step,
                   long every,
                   size_t n_real, const unsigned *real_vr, size_t n_int, const unsigned *int_vr,
                   size_t n_bool, const unsigned *bool_vr, size_t n_kpi, const int *kpi_out,
                   const int *kpi_red, const double *kpi_limit, double *kpi_value,
                   double *samples, size_t max_samples, size_t *n_samples, double *step_seconds,
                   int *fail_function, long *fail_output, double *fail_time, char *err,
                   size_t errlen) {
    size_t n_out = n_real + n_int + n_bool;
    double *y = (double *)calloc(n_out + 1, sizeof(double));
    fmi2Integer *ibuf = (fmi2Integer *)calloc(n_int + 1, sizeof(fmi2Integer));
    fmi2Boolean *bbuf = (fmi2Boolean *)calloc(n_bool + 1, sizeof(fmi2Boolean));
    Acc *acc = (Acc *)calloc(n_kpi + 1, sizeof(Acc));
    int rc = RUN_OK;
    double t = start_time, in_step = 0.0;
    size_t k = 0;
    d->log[0] = '\0';
    if (!y || !ibuf || !bbuf || !acc) {
        snprintf(err, errlen, "out of memory");
        rc = RUN_ERROR;
        goto done;
    }
    double steps = (stop_time - start_time) / step;
    if (!(steps <= 1e15)) { /* past this a long step counter loses steps: fail, never truncate */
        snprintf(err, errlen, "%g steps of %g s up to %g s are too many", steps, step, stop_time);
        *fail_function = FAIL_SETUP;
        rc = RUN_ERROR;
        goto done;
    }
    long n_steps = (long)ceil(steps - 1e-9);
    if (n_steps < 1) n_steps = 1;
    *fail_function = FAIL_RESET;
    if (d->needs_reset && drv_reset(d) > fmi2Warning) goto fmi_error;
    d->needs_reset = 1;
    *fail_function = FAIL_SETUP;
    t = start_time;
    if (drv_enter_init(d, start_time, stop_time) > fmi2Warning) goto fmi_error;
    *fail_function = FAIL_SET;
    if (set_start(d, n_start, start_vr, start_kind, start_val) > fmi2Warning) goto fmi_error;
    *fail_function = FAIL_EXIT;
    if (drv_exit_init(d) > fmi2Warning) goto fmi_error;
    for (long i = -1; i < n_steps; i++) {
        if (i >= 0) {
            t = start_time + (double)i * step;
            double h = (i == n_steps - 1) ? fmin(step, stop_time - t) : step;
            double t0 = now();
            int terminate = 0;
            int s = drv_do_step(d, t, h, &terminate);
            in_step += now() - t0;
            if (s > fmi2Warning || terminate) {
                *fail_function = FAIL_STEP;
                if (terminate && !d->log[0])
                    snprintf(d->log, sizeof d->log, "the FMU asked to terminate at t = %g", t + h);
                goto fmi_error;
            }
            t = t + h;
        }
        /* KPIs reduce every communication step; samples are kept on the output grid. */
        int on_grid = i < 0 || (i + 1) % every == 0 || i == n_steps - 1;
        if (sample(d, n_real, real_vr, n_int, int_vr, n_bool, bool_vr, y, ibuf, bbuf) >
            fmi2Warning) {
            *fail_function = FAIL_GET;
            goto fmi_error;
        }
        for (size_t j = 0; j < n_out; j++) {
            if (!isfinite(y[j])) {
                *fail_output = (long)j;
                *fail_time = t;
                snprintf(err, errlen, "%g", y[j]); /* nan, inf or -inf, as Python prints them */
                rc = RUN_NAN;
                goto done;
            }
        }
        for (size_t j = 0; j < n_kpi; j++) {
            acc_add(&acc[j], t, y[kpi_out[j]], kpi_limit[j]);
        }
        if (!on_grid) continue;
        if (samples != NULL && k < max_samples) {
            samples[k * (n_out + 1)] = t;
            memcpy(&samples[k * (n_out + 1) + 1], y, n_out * sizeof(double));
        }
        k++;
    }
    for (size_t j = 0; j < n_kpi; j++) kpi_value[j] = acc_value(&acc[j], kpi_red[j]);
    goto done;
fmi_error:
    rc = RUN_ERROR;
    *fail_time = t;
    snprintf(err, errlen, "%s", d->log[0] ? d->log : "the FMU returned an error status");
done:
    *n_samples = k;
    *step_seconds = in_step;
    free(y);
    free(ibuf);
    free(bbuf);
    free(acc);
    return rc;
}
