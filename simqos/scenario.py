"""Scenarios: YAML validated into frozen objects before anything runs.

A scenario names a profile bundle (path relative to the YAML file), a workload (arrivals,
deadlines, queue), a device (compute-speed and memory processes, storage bandwidth) and the
policies to compare. :func:`load_scenario` parses with ``yaml.safe_load`` and validates with
pydantic; every error names the file, the dotted path, the value, and — for an unknown key — the
closest known one (``workload.arival: unknown key — did you mean 'arrival'?``). See
``scenarios/README.md`` for every field.
"""

from __future__ import annotations

import copy
import re
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from simqos.errors import SimqosError, validation_message
from simqos.specs import Device, Workload, _Model, _resolve
from simqos.userfiles import read_yaml

__all__ = ["Device", "Objective", "PolicySpec", "Precision", "Scenario", "Workload", "Counts", "load_scenario", "override", "parse_scenario", "warmup_within", "with_counts"]


# --- policies and the scenario ---------------------------------------------------------------


class PolicySpec(BaseModel):
    """``kind`` names a registered policy; the other keys are its parameters, validated by it.
    ``decision_ms``: device time (profiled ms, scaled by the device's speed and its idle
    slowdown as a segment's work is) charged for each of the policy's decisions — at a request's start and at each reroute point
    — or ``measured``: the median time its ``choose`` takes on this machine, called from Python
    as simqos's real server calls it, timed over the first requests of replication 0 before the
    run (the records then depend on this machine: paste the printed value to fix it). Default
    0: decisions are free."""

    model_config = ConfigDict(extra="allow", frozen=True)
    kind: str
    label: str | None = None
    decision_ms: float | Literal["measured"] = 0.0

    @field_validator("decision_ms", mode="before")
    @classmethod
    def _decision_ms(cls, value: object) -> object:
        if value == "measured":
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if isinstance(value, bool) or not math.isfinite(number) or number < 0:
            raise ValueError("give the device ms charged per decision (0 or more) or 'measured'")
        return number

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Outputs(_Model):
    """What a run writes besides its summary: ``records`` — ``all`` (one row per request and
    policy), ``sample`` (the first ``sample_requests`` requests after warm-up of each
    replication, warm-up rows included: a contiguous stretch, which timelines need; the summary
    always covers every request) or ``none`` (``true``/``false`` read as all/none); their
    ``records_format``, ``parquet`` (columnar, compressed) or ``csv`` (gzip); and ``plots``."""

    records: Literal["all", "sample", "none"] = "all"
    sample_requests: int = Field(default=10_000, ge=1)
    records_format: Literal["parquet", "csv"] = "parquet"
    plots: bool = True

    @field_validator("records", mode="before")
    @classmethod
    def _boolean(cls, value: object) -> object:
        return {True: "all", False: "none"}.get(value, value) if isinstance(value, bool) else value


class Objective(_Model):
    """What the verdict optimises (:mod:`simqos.verdict`): ``accuracy_at_deadline`` (a miss or a
    drop counts as wrong), or ``nines`` among the policies whose mean accuracy reaches
    ``accuracy_floor``; ``baseline``: the label of the policy to compare with (default: the
    best static level)."""

    kind: Literal["accuracy_at_deadline", "nines"] = "accuracy_at_deadline"
    accuracy_floor: float | None = Field(default=None, gt=0, le=1)
    baseline: str | None = None

    @model_validator(mode="after")
    def _floor(self) -> Objective:
        if self.accuracy_floor is not None and self.kind != "nines":
            raise ValueError("accuracy_floor applies to kind: nines; remove it or set kind: nines")
        return self


class Precision(_Model):
    """A stopping rule: after the scenario's ``replications``, run as many again, and again,
    until every policy's nines interval reaches ``nines_half_width`` on each side of the point,
    or ``max_replications`` have run (a budget in replications, so that the same scenario and
    seed give the same records on any machine)."""

    nines_half_width: float = Field(gt=0)
    max_replications: int = Field(ge=1)


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
"""A scenario's name: it names the results folder (``runs/NAME``), so it cannot be a path."""


class Scenario(_Model):
    """A whole experiment; see ``scenarios/README.md``. ``folder``: where its relative paths
    were taken from (its file's folder; None for one parsed from a dict without a base), which
    :func:`override` takes a relative path from too."""

    _folder: Path | None = PrivateAttr(None)

    @property
    def folder(self) -> Path | None:
        return self._folder

    name: str = Field(min_length=1)
    seed: int = Field(default=0, ge=0)
    profile: Path
    requests: int | None = Field(default=None, gt=0)
    duration_s: float | None = Field(default=None, gt=0)
    warmup_requests: int = Field(default=0, ge=0)
    replications: int = Field(default=1, ge=1)
    output: Path | None = None
    workload: Workload
    device: Device = Device()
    policies: list[PolicySpec] = Field(min_length=1)
    plugins: list[str] = Field(default_factory=list)
    plugin_path: list[Path] = Field(default_factory=list)
    engine: Literal["auto", "simpy"] = "auto"
    outputs: Outputs = Outputs()
    precision: Precision | None = None
    objective: Objective = Objective()

    _resolve_profile = field_validator("profile")(_resolve)

    @field_validator("plugin_path")
    @classmethod
    def _resolve_plugin_path(cls, folders: list[Path], info: ValidationInfo) -> list[Path]:
        return [_resolve(folder, info) for folder in folders]

    @model_validator(mode="before")
    @classmethod
    def _plugins_beside_the_file(cls, data: Any, info: ValidationInfo) -> Any:
        """Plugins are looked for in the scenario file's folder first (``plugin_path``, when not
        given), then on the Python path."""
        base = (info.context or {}).get("base")
        if isinstance(data, dict) and data.get("plugins") and "plugin_path" not in data and base is not None:
            return {**data, "plugin_path": [str(base)]}
        return data

    @field_validator("name")
    @classmethod
    def _a_name(cls, name: str) -> str:
        if not _NAME.fullmatch(name) or name in (".", ".."):
            raise ValueError(
                "is a name, not a path: letters, digits, '.', '_' and '-', starting with a letter or digit, "
                "at most 100 characters (e.g. iot-camera); to choose where results go, use --out or output:"
            )
        return name

    @model_validator(mode="after")
    def _length(self) -> Scenario:
        if (self.requests is None) == (self.duration_s is None):
            raise ValueError("give exactly one of requests or duration_s")
        if self.requests is not None and self.warmup_requests >= self.requests:
            raise ValueError(f"warmup_requests ({self.warmup_requests}) must be below requests ({self.requests})")
        if self.precision is not None and self.precision.max_replications < self.replications:
            raise ValueError(
                f"precision.max_replications ({self.precision.max_replications}) must be >= replications "
                f"({self.replications}); raise it or lower replications"
            )
        return self


def parse_scenario(raw: object, source: str = "scenario", base: Path | None = None) -> Scenario:
    """Validate an already-parsed YAML document; relative paths resolve against ``base``."""
    if not isinstance(raw, dict):
        raise SimqosError(f"{source}: a scenario is a YAML mapping of keys (name, profile, workload, ...)")
    try:
        scenario = Scenario.model_validate(raw, context={"base": base})
    except ValidationError as exc:
        raise SimqosError(f"{source}: {validation_message(exc, Scenario, 'a scenario')}") from None
    scenario._folder = base
    return scenario


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML file; raises SimqosError naming the problem."""
    path = Path(path)
    raw = read_yaml(path, "scenario", hint="the shipped ones are in scenarios/")
    return parse_scenario(raw, str(path), path.parent.resolve())


def override(scenario: Scenario, dotted: str, value: object) -> Scenario:
    """A copy of ``scenario`` with the field at ``dotted`` (e.g. ``workload.deadline.ms``) set
    to ``value``, validated again; raises SimqosError naming the path if it does not exist. A
    relative path given as ``value`` is taken from the scenario file's folder, as in the file."""
    raw = copy.deepcopy(scenario.model_dump(mode="json"))
    node = raw
    *parents, last = dotted.split(".")
    for part in parents:
        if not isinstance(node, dict) or part not in node:
            raise SimqosError(f"{dotted}: {part!r} is not a field here; check the scenario's keys")
        node = node[part]
    if not isinstance(node, dict) or last not in node:
        raise SimqosError(f"{dotted}: {last!r} is not a field here; check the scenario's keys")
    node[last] = value
    return parse_scenario(raw, f"{scenario.name} with {dotted}={value!r}", scenario.folder)


def warmup_within(warmup_requests: int, requests: int) -> int:
    """The warm-up a run of ``requests`` requests keeps when its count is replaced: at most a
    tenth of them."""
    return min(warmup_requests, requests // 10)


class Counts(_Model):
    """A run's request count and replications when given apart from the scenario (``simqos run
    --requests``, a sweep's ``requests:``, :func:`simqos.run_scenario`'s arguments); None: the
    scenario's."""

    requests: int | None = Field(None, ge=1)
    replications: int | None = Field(None, ge=1)


def with_counts(scenario: Scenario, requests: int | None = None, replications: int | None = None, source: str = "scenario",
                ) -> Scenario:
    """``scenario`` with its request count and replications replaced (None: kept), as ``simqos
    run --requests`` and a sweep's ``requests:`` do: a request count replaces a duration, and
    the warm-up becomes at most a tenth of the requests. A count below 1 raises SimqosError
    naming it (a command checks its options with :class:`Counts` first, to name them as options)."""
    try:
        given = Counts(requests=requests, replications=replications)
    except ValidationError as exc:
        raise SimqosError(validation_message(exc, Counts, "the counts")) from None
    counts = given.model_dump(exclude_none=True)
    if not counts:
        return scenario
    if "requests" in counts:
        counts["duration_s"] = None
        counts["warmup_requests"] = warmup_within(scenario.warmup_requests, counts["requests"])
    return parse_scenario(scenario.model_dump() | counts, f"{source} (with overrides)", scenario.folder)
