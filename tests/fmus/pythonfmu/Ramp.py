"""A test FMU from a second exporter: PythonFMU builds it (FMI 2.0 co-simulation, a
prebuilt C wrapper that runs this class in an embedded Python).

y = k t, so y(T) = k T and the integral of y over [0, T] is k T^2 / 2, exactly on any
grid (the trapezoid rule is exact for a line). ``cycles`` counts the steps taken.
"""

from pythonfmu import Fmi2Causality, Fmi2Slave, Fmi2Variability, Integer, Real


class Ramp(Fmi2Slave):
    author = "asset-twin tests"
    description = "A ramp y = k t, and the number of steps taken"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.k = 2.0
        self.y = 0.0
        self.cycles = 0
        self.register_variable(
            Real("k", causality=Fmi2Causality.parameter, variability=Fmi2Variability.tunable)
        )
        self.register_variable(Real("y", causality=Fmi2Causality.output))
        self.register_variable(
            Integer("cycles", causality=Fmi2Causality.output, variability=Fmi2Variability.discrete)
        )

    def do_step(self, current_time, step_size):
        self.y = self.k * (current_time + step_size)
        self.cycles += 1
        return True
