"""CVode over an FMI 2.0 or 3.0 model-exchange instance, through the SUNDIALS 7 libraries
that fmpy ships (``fmpy.sundials``: ctypes bindings, loaded on first use).

fmpy's own ``CVodeSolver`` is not used: an exception inside its right-hand side is
printed by ctypes and swallowed, so CVode goes on with whatever the buffer held and
the FMU's own error message is lost behind "mxstep steps taken"; and its warnings go
to the process's stderr. Here a failing callback returns -1 (CVode stops at once) and
its exception is raised from ``step``; SUNDIALS' messages are collected, not printed;
and every SUNDIALS object is freed on ``close``.

The integrator is CVode's variable-order BDF with a dense direct linear solver and
root finding on the FMU's event indicators (Hindmarsh et al., "SUNDIALS: Suite of
nonlinear and differential/algebraic equation solvers", ACM TOMS 31(3), 2005), as in
fmpy's ``simulate_fmu``: absolute tolerance per state = relative tolerance x the
state's nominal value.
"""

from __future__ import annotations

from ctypes import POINTER, byref, c_int, c_void_p
from typing import Any

import numpy as np


class _Lib:
    """The bindings, with the prototypes fmpy leaves undeclared set here."""

    def __init__(self) -> None:
        from fmpy.sundials import (
            cvode,
            cvode_ls,
            nvector_serial,
            sundials_context,
            sunlinsol_dense,
            sunmatrix_dense,
        )
        from fmpy.sundials import libraries as libs
        from fmpy.sundials import sundials_types as st

        self.cv, self.ls, self.nv, self.ctx_mod = cvode, cvode_ls, nvector_serial, sundials_context
        self.st, self.mat, self.sol = st, sunmatrix_dense, sunlinsol_dense
        core, nvec = libs.sundials_core, libs.sundials_nvecserial
        ptr, ctx = POINTER(c_void_p), st.SUNContext
        self.context_free = _declare(core.SUNContext_Free, [POINTER(ctx)], c_int)
        self.clear_handlers = _declare(core.SUNContext_ClearErrHandlers, [ctx], c_int)
        # A logger made here has no output files: SUNDIALS' warnings print nowhere.
        self.logger_create = _declare(core.SUNLogger_Create, [st.SUNComm, c_int, ptr], c_int)
        self.logger_destroy = _declare(core.SUNLogger_Destroy, [ptr], c_int)
        self.set_logger = _declare(core.SUNContext_SetLogger, [ctx, c_void_p], c_int)
        self.vector_free = _declare(nvec.N_VDestroy_Serial, [c_void_p], None)
        self.matrix_free = _declare(core.SUNMatDestroy, [c_void_p], None)
        self.solver_free = _declare(core.SUNLinSolFree, [c_void_p], c_int)


def _declare(function: Any, argtypes: list[Any], restype: Any) -> Any:
    function.argtypes, function.restype = argtypes, restype
    return function


_LIB: _Lib | None = None


def _lib() -> _Lib:
    global _LIB
    if _LIB is None:
        _LIB = _Lib()
    return _LIB


class SolverError(RuntimeError):
    """CVode stopped: too much work, error test or convergence failures."""


class NonFiniteDerivative(ArithmeticError):
    """The FMU returned a NaN or infinite derivative: state ``index`` at time ``t``."""

    def __init__(self, index: int, value: float, t: float) -> None:
        super().__init__(f"derivative {index} is {value} at t = {t:g}")
        self.index, self.value, self.t = index, value, t


class Cvode:
    """Integrates one model-exchange instance in continuous-time mode.

    ``step(t_out)`` integrates to ``t_out`` or to the first root of an event indicator
    before it, leaves the FMU's states and time there and returns ``(t, state_event)``;
    ``reset(t)`` restarts from the FMU's present states (after an event, or an input
    that jumped); ``last_t`` is the time of the last callback (where a failure was).
    """

    def __init__(
        self,
        model: Any,
        nx: int,
        nz: int,
        t0: float,
        *,
        relative_tolerance: float,
        max_step: float,
        max_num_steps: int = 100_000,
    ) -> None:
        lib = _lib()
        cv, st, nv = lib.cv, lib.st, lib.nv
        self._lib = lib
        self.model = model
        # FMI 3.0 names it getContinuousStateDerivatives, FMI 2.0 getDerivatives.
        self._derivatives = (
            model.getContinuousStateDerivatives if hasattr(model, "getContinuousStateDerivatives")
            else model.getDerivatives
        )  # fmt: skip
        self.discrete = nx == 0  # one dummy state, constant, so roots are still found
        self.nx, self.nz = (1 if self.discrete else nx), nz
        self.rtol = relative_tolerance
        self.last_t = t0
        self.error: BaseException | None = None
        self.messages: list[str] = []
        self._mem: Any = None
        self._ctx = st.SUNContext()
        self._check(lib.ctx_mod.SUNContext_Create(st.SUN_COMM_NULL, byref(self._ctx)), "context")
        # SUNDIALS' own handlers print to stderr: keep its messages for our error instead.
        self._logger = c_void_p()
        self._check(lib.logger_create(st.SUN_COMM_NULL, 0, byref(self._logger)), "logger")
        self._check(lib.set_logger(self._ctx, self._logger), "logger")
        lib.clear_handlers(self._ctx)
        self._handler = st.SUNErrHandlerFn(self._on_error)
        lib.ctx_mod.SUNContext_PushErrHandler(self._ctx, self._handler, None)

        self._x = nv.N_VNew_Serial(self.nx, self._ctx)
        self._abstol = nv.N_VNew_Serial(self.nx, self._ctx)
        self._px = nv.NV_DATA_S(self._x)
        self._pabstol = nv.NV_DATA_S(self._abstol)
        self._load_states()
        self._rhs = cv.CVRhsFn(self._f)
        self._roots = cv.CVRootFn(self._g)
        self._mem = cv.CVodeCreate(cv.CV_BDF, self._ctx)
        self._check(cv.CVodeInit(self._mem, self._rhs, t0, self._x), "CVodeInit")
        self._check(cv.CVodeSVtolerances(self._mem, self.rtol, self._abstol), "tolerances")
        self._check(cv.CVodeRootInit(self._mem, nz, self._roots), "CVodeRootInit")
        self._matrix = lib.mat.SUNDenseMatrix(self.nx, self.nx, self._ctx)
        self._solver = lib.sol.SUNLinSol_Dense(self._x, self._matrix, self._ctx)
        self._check(
            lib.ls.CVodeSetLinearSolver(self._mem, self._solver, self._matrix), "linear solver"
        )
        self._check(cv.CVodeSetMaxStep(self._mem, max_step), "CVodeSetMaxStep")
        self._check(cv.CVodeSetMaxNumSteps(self._mem, max_num_steps), "CVodeSetMaxNumSteps")
        self._check(cv.CVodeSetNoInactiveRootWarn(self._mem), "CVodeSetNoInactiveRootWarn")

    # -- callbacks (a failure returns -1: CVode stops and step() raises it) ------------

    def _on_error(self, line: Any, func: Any, file: Any, msg: Any, code: Any, *_: Any) -> None:
        text = msg.decode("utf-8", "replace") if msg else ""
        where = func.decode("utf-8", "replace") if func else "CVode"
        self.messages.append(f"{where}: {text}")

    def _f(self, t: float, y: Any, ydot: Any, user_data: Any) -> int:
        self.last_t = t
        try:
            self.model.setTime(t)
            if self.discrete:
                np.ctypeslib.as_array(self._lib.nv.NV_DATA_S(ydot), (1,))[:] = 0.0
            else:
                nv = self._lib.nv
                self.model.setContinuousStates(nv.NV_DATA_S(y), self.nx)
                self._derivatives(nv.NV_DATA_S(ydot), self.nx)
                dx = np.ctypeslib.as_array(nv.NV_DATA_S(ydot), (self.nx,))
                if not np.isfinite(dx).all():
                    index = int(np.flatnonzero(~np.isfinite(dx))[0])
                    raise NonFiniteDerivative(index, float(dx[index]), t)
        except BaseException as exc:  # raised again from step()
            self.error = self.error or exc
            return -1
        return 0

    def _g(self, t: float, y: Any, gout: Any, user_data: Any) -> int:
        self.last_t = t
        try:
            self.model.setTime(t)
            if not self.discrete:
                self.model.setContinuousStates(self._lib.nv.NV_DATA_S(y), self.nx)
            self.model.getEventIndicators(gout, self.nz)
        except BaseException as exc:
            self.error = self.error or exc
            return -1
        return 0

    # -- integration ----------------------------------------------------------------------

    def _load_states(self) -> None:
        """x and the absolute tolerances from the FMU's present states and nominals."""
        x = np.ctypeslib.as_array(self._px, (self.nx,))
        atol = np.ctypeslib.as_array(self._pabstol, (self.nx,))
        if self.discrete:
            x[:] = 1.0
            atol[:] = 1.0
        else:
            self.model.getContinuousStates(self._px, self.nx)
            self.model.getNominalsOfContinuousStates(self._pabstol, self.nx)
            atol[:] = np.abs(atol)
        atol *= self.rtol

    def step(self, t_out: float) -> tuple[float, bool]:
        cv, st = self._lib.cv, self._lib.st
        t_ret = st.realtype(0.0)
        flag = cv.CVode(self._mem, t_out, self._x, byref(t_ret), cv.CV_NORMAL)
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        if flag < 0:
            detail = self.messages[-1] if self.messages else f"flag {flag}"
            raise SolverError(f"CVode failed at t = {t_ret.value:.10g}: {detail}")
        t = float(t_ret.value)
        self.model.setTime(t)
        if not self.discrete:
            self.model.setContinuousStates(self._px, self.nx)
        return t, flag == cv.CV_ROOT_RETURN

    def reset(self, t: float) -> None:
        self._load_states()
        self._check(self._lib.cv.CVodeReInit(self._mem, t, self._x), "CVodeReInit")

    def _check(self, flag: int, what: str) -> None:
        if flag != 0:
            detail = self.messages[-1] if self.messages else f"flag {flag}"
            raise SolverError(f"CVode set-up failed ({what}): {detail}")

    def close(self) -> None:
        lib = self._lib
        if self._mem is not None:
            lib.cv.CVodeFree(byref(c_void_p(self._mem)))
            self._mem = None
            lib.solver_free(self._solver)
            lib.matrix_free(self._matrix)
            lib.vector_free(self._x)
            lib.vector_free(self._abstol)
            lib.context_free(byref(self._ctx))
            lib.logger_destroy(byref(self._logger))

    def __enter__(self) -> Cvode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
