"""The parts of a scenario that describe the world: the workload (arrival processes, deadlines,
the queue) and the device (compute-speed and memory processes, noise, storage, time-slicing),
as frozen pydantic models that carry their behaviour — an arrival process's mean rate, a
deadline's median, longest and draws. :mod:`simqos.scenario` puts them together with the
policies, the objective and the outputs; ``scenarios/README.md`` documents every field."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, create_model, field_validator, model_validator

from simqos.markov import embedded_stationary, transition_matrix
from simqos.userfiles import read_arrivals_csv

__all__ = ["Arrival", "Deadline", "Device", "MemoryProcess", "Queue", "SpeedProcess", "Workload"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _resolve(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base")
    return value if value.is_absolute() or base is None else (base / value).resolve()  # no "scenarios/../" left


def _check_transitions(transitions: list[list[float]] | None, n_states: int) -> list[list[float]] | None:
    if transitions is None:
        return None
    m = np.asarray(transitions, dtype=float)
    if m.shape != (n_states, n_states):
        raise ValueError(f"transitions must be a {n_states}x{n_states} matrix, one row per state")
    if np.any(m < 0) or np.any(np.diag(m) != 0) or not np.allclose(m.sum(axis=1), 1.0):
        raise ValueError("transitions: rows must be probabilities summing to 1, with zeros on the diagonal")
    return transitions


# --- workload -----------------------------------------------------------------------------


class PoissonArrival(_Model):
    """Poisson arrivals at ``rate_hz`` requests per second."""

    kind: Literal["poisson"]
    rate_hz: float = Field(gt=0)

    def mean_rate_hz(self) -> float:
        """The long-run mean arrival rate (requests/s)."""
        return self.rate_hz


class PeriodicArrival(_Model):
    """One request per frame at ``fps``, each delayed by a uniform jitter in [0, ``jitter_ms``)."""

    kind: Literal["periodic"]
    fps: float = Field(gt=0)
    jitter_ms: float = Field(default=0.0, ge=0)

    def mean_rate_hz(self) -> float:
        """The long-run mean arrival rate (requests/s)."""
        return self.fps


class BurstyState(_Model):
    name: str = ""
    rate_hz: float = Field(ge=0)
    mean_dwell_s: float = Field(gt=0)


class BurstyArrival(_Model):
    """A Markov-modulated Poisson process: a rate per state; default jumps uniform to other states."""

    kind: Literal["bursty"]
    states: list[BurstyState] = Field(min_length=1)
    transitions: list[list[float]] | None = None

    @model_validator(mode="after")
    def _transitions(self) -> BurstyArrival:
        _check_transitions(self.transitions, len(self.states))
        if not any(s.rate_hz > 0 for s in self.states):
            raise ValueError("at least one state needs rate_hz > 0")
        return self

    def mean_rate_hz(self) -> float:
        """The long-run mean arrival rate (requests/s): each state's rate weighted by the share of
        time the chain spends in it."""
        dwell = np.array([s.mean_dwell_s for s in self.states])
        time_share = embedded_stationary(transition_matrix(self.transitions, len(self.states))) * dwell
        return float(np.dot(time_share / time_share.sum(), [s.rate_hz for s in self.states]))


class TraceArrival(_Model):
    """Arrival times (s) replayed from the ``arrival_s`` column of a CSV file; ``rate_hz``: the
    mean rate (requests/s) the planning policies (lookahead, queue_dp) may assume — the file's
    own average would tell them of arrivals still to come."""

    kind: Literal["trace"]
    path: Path
    after_end: Literal["error", "repeat"] = "error"
    rate_hz: float | None = Field(default=None, gt=0)

    _resolve_path = field_validator("path")(_resolve)

    def mean_rate_hz(self) -> float:
        """The file's mean arrival rate (requests/s): its arrivals over the time they span."""
        times = read_arrivals_csv(self.path)
        return len(times) / max(float(times[-1]), 1e-9)


Arrival = Annotated[PoissonArrival | PeriodicArrival | BurstyArrival | TraceArrival, Field(discriminator="kind")]


class ConstantDeadline(_Model):
    """Every request has ``ms`` milliseconds."""

    kind: Literal["constant"]
    ms: float = Field(gt=0)

    @property
    def median_ms(self) -> float:
        return self.ms

    @property
    def longest_ms(self) -> float:
        """The longest deadline a request gets (ms)."""
        return self.ms

    @property
    def fixed_ms(self) -> float | None:
        """The deadline (ms) when every request has the same one, else None."""
        return self.ms

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` relative deadlines (ms)."""
        return np.full(n, float(self.ms))


class UniformDeadline(_Model):
    kind: Literal["uniform"]
    low_ms: float = Field(gt=0)
    high_ms: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> UniformDeadline:
        if self.high_ms < self.low_ms:
            raise ValueError(f"high_ms ({self.high_ms}) must be >= low_ms ({self.low_ms})")
        return self

    @property
    def median_ms(self) -> float:
        return (self.low_ms + self.high_ms) / 2

    @property
    def longest_ms(self) -> float:
        return self.high_ms

    @property
    def fixed_ms(self) -> float | None:
        return None

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` relative deadlines (ms), uniform in ``[low_ms, high_ms]``."""
        return rng.uniform(self.low_ms, self.high_ms, size=n)


class LognormalDeadline(_Model):
    """Log-normal relative deadlines with the given median and log-space ``sigma``."""

    kind: Literal["lognormal"]
    median_ms: float = Field(gt=0)
    sigma: float = Field(ge=0)

    @property
    def longest_ms(self) -> float:
        """3.5 sigma above the median: all but about 2 in 10,000 requests' deadlines."""
        return self.median_ms * float(np.exp(3.5 * self.sigma))

    @property
    def fixed_ms(self) -> float | None:
        return None

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` relative deadlines (ms)."""
        return self.median_ms * np.exp(self.sigma * rng.standard_normal(n))


Deadline = Annotated[ConstantDeadline | UniformDeadline | LognormalDeadline, Field(discriminator="kind")]
"""Each kind has ``median_ms``, ``longest_ms``, ``fixed_ms`` (None unless constant) and ``draw(n, rng)``."""


class Queue(_Model):
    """``capacity``: waiting requests beyond which an arrival is dropped (none: unbounded).
    ``late``: a request that reaches the device already unable to meet its deadline — even on
    the sparsest route at the current speed — is run anyway (``run``) or dropped (``drop``)."""

    capacity: int | None = Field(default=None, ge=0)
    late: Literal["run", "drop"] = "run"


class Workload(_Model):
    arrival: Arrival
    deadline: Deadline
    queue: Queue = Queue()


# --- device --------------------------------------------------------------------------------


def _process_models(field: str, unit_doc: str, positive: bool) -> Any:
    """The four process kinds (constant, markov, periodic, trace) over one value ``field``."""
    bound = {"gt": 0} if positive else {"ge": 0}
    constant = create_model(f"Constant_{field}", __base__=_Model, kind=(Literal["constant"], ...), **{field: (float, Field(**bound))})
    state = create_model(
        f"State_{field}",
        __base__=_Model,
        name=(str, ""),
        mean_dwell_s=(float, Field(gt=0)),
        **{field: (float, Field(**bound))},
    )

    class Markov(_Model):
        kind: Literal["markov"]
        states: list[state] = Field(min_length=1)  # type: ignore[valid-type]
        transitions: list[list[float]] | None = None
        initial: str | None = None

        @model_validator(mode="after")
        def _check(self) -> Any:
            _check_transitions(self.transitions, len(self.states))
            names = [s.name for s in self.states]
            if self.initial is not None and self.initial not in names:
                raise ValueError(f"initial {self.initial!r} is not a state name; choose among {names}")
            return self

    periodic = create_model(
        f"Periodic_{field}",
        __base__=_Model,
        kind=(Literal["periodic"], ...),
        high=(float, Field(**bound)),
        low=(float, Field(**bound)),
        period_s=(float, Field(gt=0)),
        duty=(float, Field(gt=0, lt=1)),
        phase_s=(float, Field(default=0.0, ge=0)),
    )

    class Trace(_Model):
        kind: Literal["trace"]
        path: Path
        after_end: Literal["error", "hold", "repeat"] = "error"

        _resolve_path = field_validator("path")(_resolve)

    Markov.__name__ = Markov.__qualname__ = f"Markov_{field}"
    Trace.__name__ = Trace.__qualname__ = f"Trace_{field}"
    return Annotated[constant | Markov | periodic | Trace, Field(discriminator="kind", description=unit_doc)]


SpeedProcess = _process_models("speed", "compute speed factor; 1.0 = as profiled", positive=True)
MemoryProcess = _process_models("memory_mb", "megabytes available to the model's weights", positive=False)


def _process_words(spec: Any, field: str, unit: str) -> str:
    """One device process in words (speed factors: 1 = as profiled)."""
    if spec.kind == "constant":
        return f"constant at {getattr(spec, field):g}{unit}"
    if spec.kind == "markov":
        states = ", ".join(f"{s.name or f'state {i}'} {getattr(s, field):g}{unit} (about {s.mean_dwell_s:g} s at a time)"
                           for i, s in enumerate(spec.states))
        return f"a Markov chain over {states}"
    if spec.kind == "periodic":
        return (f"periodic, {spec.high:g}{unit} then {spec.low:g}{unit} for {spec.duty:.0%} of every {spec.period_s:g} s")
    return f"replayed from {spec.path.name} (after its end: {spec.after_end})"


class Device(_Model):
    """``speed``: compute-speed process (default constant 1.0). ``noise``: a second speed
    process multiplied onto it, the machine's own wander and stalls, which the policies that
    plan over ``speed`` do not know (default: none). ``memory``: memory available to the
    weights (default: unlimited). ``storage_bandwidth_mb_s``: reload speed of evicted weights.
    ``slice_ms``: CPU time-slicing under competing processes (default 0: a speed factor alone).
    With it, a ``speed`` below 1 is the share of the core that other processes leave: the server
    runs slices of ``slice_ms`` of work at the whole core and waits out the competitors' turns
    between them, and a request that finds the server idle starts with a whole slice (a thread
    that slept is scheduled at once), so short and woken requests slow down less than long and
    queued ones, and their times spread by whole turns (:mod:`simqos.sim.timeslice`; ``simqos
    validate`` measures this machine's slice). ``wake_wait``: with ``slice_ms``, the fraction of
    the running competitor's slice that a woken request waits out before its own, by the number
    of competitors (the first for one, the last for that many or more; default none: it runs at
    once), e.g. ``[0.9, 0.0]``: under one competitor a woken thread is placed behind the running
    one, under three it mostly runs at once (``simqos validate`` measures this machine's)."""

    speed: SpeedProcess = Field(default={"kind": "constant", "speed": 1.0}, validate_default=True)  # type: ignore[valid-type]
    noise: SpeedProcess | None = None  # type: ignore[valid-type]
    memory: MemoryProcess | None = None  # type: ignore[valid-type]
    storage_bandwidth_mb_s: float = Field(default=100.0, gt=0)
    slice_ms: float = Field(default=0.0, ge=0)
    wake_wait: list[Annotated[float, Field(ge=0, le=1)]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _wake_wait_needs_slices(self) -> Device:
        if any(self.wake_wait) and self.slice_ms <= 0:
            raise ValueError("wake_wait is a share of a competitor's slice, so it needs slice_ms > 0 (or remove wake_wait)")
        return self

    def describe(self) -> str:
        """The device in words, for a report: its speed, noise, memory and slicing."""
        words = [f"speed {_process_words(self.speed, 'speed', '')}"]
        if self.noise is not None:
            words.append(f"times a noise {_process_words(self.noise, 'speed', '')}")
        words.append("memory unlimited" if self.memory is None else
                     f"memory {_process_words(self.memory, 'memory_mb', ' MB')}, evicted weights reloaded at "
                     f"{self.storage_bandwidth_mb_s:g} MB/s")
        if self.slice_ms > 0:
            words.append(f"time-sliced in slices of {self.slice_ms:g} ms, a speed below 1 being the share of the core that "
                         "competing processes leave")
            if any(self.wake_wait):
                last = len(self.wake_wait) - 1
                words.append("a woken request waiting for the running competitor's slice: " + ", ".join(
                    f"{f:.0%} of it under {n + 1}{' or more' if n == last else ''}" for n, f in enumerate(self.wake_wait)))
        return "; ".join(words)

    def processes(self) -> list[tuple[str, Any, str]]:
        """``(field path, process, value column)`` of the speed and (when given) the noise and
        memory processes, e.g. ``("device.speed", ..., "speed")``."""
        every = [("device.speed", self.speed, "speed"), ("device.noise", self.noise, "speed"), ("device.memory", self.memory, "memory_mb")]
        return [(field, spec, column) for field, spec, column in every if spec is not None]
