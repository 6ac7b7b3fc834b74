"""`twin mes simulate`: an MES playing a shift against a running service, over HTTP.

The shift file names the machines (their state, environment, constants, external ids) and the job
orders. The simulated MES registers the machines, then, order by order, asks for an
assessment and acts on the decision as a shop would:

* RELEASE: the order runs on the machine;
* RELEASE_WITH_ADJUSTMENT: the MES takes the proposed setting and asks again;
* MAINTAIN_FIRST: the maintenance is done (the CMMS reports the state after it with a
  merge patch, ``PATCH /v1/assets/{id}``, which leaves everything else as it is) and the
  MES asks again;
* REROUTE: the MES moves the order to the first-ranked machine and asks again;
* HOLD_FOR_REVIEW, UNDECIDED: the order waits for a person; nothing runs.

The machines sit in the shift's ISA-95 hierarchy (site, area, work center), so a reroute
stays in the cell. Parameters go out in the units the shift's MES uses (``units``:
UCUM or UNECE Rec 20 codes, such as MTR for a path in metres), converted from the
spec's by the same unit library the service reads them with.

A released order runs on the FMU of the twin spec (the physics stands in for the shop
floor), from the machine's state as the service holds it; the completion is an ISA-95
job response: its id, actual end time, good quantity, the measured quality per
characteristic as samples, a broken tool, the tool changes, and the tool's measured
wear where the machine has a tool probe. The MES replaces the tool after an order whose
decision advised it or that broke the tool.

Only this module and its command (``serving._mes_cli``) import the physics (fmpy); the
service never does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["Api", "Shift", "SimError", "load_shift", "play", "register", "report"]

DEFAULT_SHIFT = Path("experiments/mes/shift.yaml")
DEFAULT_SPEC = Path("experiments/specs/spindle.yaml")
FOLLOW = {"RELEASE_WITH_ADJUSTMENT", "MAINTAIN_FIRST", "REROUTE"}
MAX_ASKS = 4  # an order is assessed at most this often before the MES gives up


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MachineIn(_Strict):
    equipment_id: str = Field(min_length=1)
    description: str = ""
    external_ids: dict[str, str] = Field(default_factory=dict)
    state: dict[str, float] = Field(default_factory=dict)
    environment: dict[str, float] = Field(default_factory=dict)
    machine: dict[str, float] = Field(default_factory=dict)
    tool_probe: bool = False
    state_age_hours: float = Field(0.0, ge=0)
    site: str | None = None
    area: str | None = None
    work_center: str | None = None


class OrderIn(_Strict):
    job_order_id: str = Field(min_length=1)
    equipment_id: str = Field(min_length=1)
    note: str = ""
    planned_quantity: float = Field(gt=0)
    parameters: dict[str, float | bool | str]
    quality_specs: list[dict[str, Any]] = Field(default_factory=list)
    # The pass: {type: roughing, stock_allowance: 0.5, unit: mm} (default: the spec's).
    operation: dict[str, Any] | None = None
    execution_mode: str = "Production"


class Shift(_Strict):
    asset_type: str
    # The unit the MES sends each parameter in (the spec's unit where not named).
    units: dict[str, str] = Field(default_factory=dict)
    machines: list[MachineIn] = Field(min_length=1)
    orders: list[OrderIn] = Field(min_length=1)


class SimError(Exception):
    """What the simulation cannot go on with: exit 2, one clear line."""


def load_shift(path: Path) -> Shift:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SimError(f"--shift: {path} does not exist") from None
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SimError(f"--shift: {path} is not a YAML file ({exc})") from None
    try:
        shift = Shift.model_validate(data)
    except ValidationError as exc:
        lines = [f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})"
                 for e in exc.errors()]
        raise SimError(f"{path}: not a valid shift:\n  " + "\n  ".join(lines)) from None
    known = {m.equipment_id for m in shift.machines}
    for n, o in enumerate(shift.orders):
        if o.equipment_id not in known:
            raise SimError(f"{path}: orders.{n}.equipment_id: {o.equipment_id!r} is not one "
                           f"of the shift's machines ({', '.join(sorted(known))})")
    return shift


class Api:
    """The service as the MES sees it; a non-2xx answer raises SimError with the problem."""

    def __init__(self, url: str, api_key: str | None, timeout: float = 30.0) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)
        self.url = url

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None, *, missing_ok: bool = False) -> Any:
        """The answer's JSON; None for a 404 when ``missing_ok``."""
        import httpx

        try:
            resp = self._http.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise SimError(f"{method} {self.url}{path}: {exc}") from None
        if missing_ok and resp.status_code == 404:
            return None
        if resp.status_code >= 300:
            try:
                p = resp.json()
                detail = p.get("detail", "")
                errs = "; ".join(f"{e.get('field')}={e.get('value')!r}: {e.get('expected')}"
                                 for e in p.get("errors", []))
                text = f"{p.get('title', '')}: {detail}" + (f" ({errs})" if errs else "")
            except ValueError:
                text = resp.text[:300]
            raise SimError(f"{method} {path}: {resp.status_code} {text}")
        out: dict[str, Any] = resp.json()
        return out


@dataclass
class Outcome:
    """One order of the shift: every decision asked for it, and what ran."""

    order: OrderIn
    steps: list[dict[str, Any]] = field(default_factory=list)  # decision per assessment
    actions: list[str] = field(default_factory=list)
    ran_on: str | None = None
    kpis: dict[str, float] | None = None
    completion: dict[str, Any] | None = None

    @property
    def final(self) -> dict[str, Any]:
        return self.steps[-1]


Units = dict[str, tuple[str, str]]  # parameter: (the MES's unit, the spec's unit)


def _param(key: str, value: Any, units: Units) -> dict[str, Any]:
    """A job order parameter as the MES sends it: in its own unit where it has one."""
    if key not in units or isinstance(value, bool) or not isinstance(value, int | float):
        return {"id": key, "value": value}
    from physics.units import convert

    sent, spec_unit = units[key]
    return {"id": key, "value": convert(float(value), spec_unit, sent), "unit": sent}


def _order_body(order: OrderIn, equipment_id: str, params: dict[str, Any],
                start: datetime, units: Units) -> dict[str, Any]:
    body = {
        "equipment_id": equipment_id,
        "job_order_parameters": [_param(k, v, units) for k, v in params.items()],
        "planned_quantity": order.planned_quantity,
        "quality_specs": order.quality_specs,
        "execution_mode": order.execution_mode,
        "start_time": start.isoformat(),
    }
    if order.operation is not None:
        body["operation"] = order.operation
    return body


def _path(equipment_id: str) -> str:
    from urllib.parse import quote

    return f"/v1/assets/{quote(equipment_id, safe='')}"


def register(api: Api, shift: Shift, now: datetime) -> None:
    """Each machine as the shift describes it: created, or replaced (with the ETag of the
    version read) when a store already holds it."""
    for m in shift.machines:
        body = {
            "asset_type": shift.asset_type, "description": m.description,
            "site": m.site, "area": m.area, "work_center": m.work_center,
            "external_ids": m.external_ids, "state": m.state, "environment": m.environment,
            "machine": m.machine,
            "state_measured_at": (now - timedelta(hours=m.state_age_hours)).isoformat(),
            "device_health": "NORMAL",
        }
        current = api.call("GET", _path(m.equipment_id), missing_ok=True)
        if current is not None and current.get("retired_at") is None:
            api.call("PUT", _path(m.equipment_id), body, headers={"If-Match": current["etag"]})
        else:
            api.call("PUT", _path(m.equipment_id), body, headers={"If-None-Match": "*"})


def _patch_state(api: Api, equipment_id: str, state: dict[str, float], now: datetime) -> None:
    """The CMMS reports the machine after maintenance: a merge patch of the state it
    measured; every other value the twin holds stays."""
    api.call("PATCH", _path(equipment_id), {
        "state": state, "state_measured_at": now.isoformat(), "device_health": "NORMAL"},
        headers={"Content-Type": "application/merge-patch+json"})


Runner = Callable[[dict[str, Any], float], dict[str, float]]
Chars = tuple[str, str, str | None]  # quality KPI, characteristic id, unit


def play_order(api: Api, order: OrderIn, job_id: str, run: Runner, chars: list[Chars],
               probes: set[str], clock: datetime, units: Units | None = None) -> Outcome:
    out = Outcome(order)
    params: dict[str, Any] = dict(order.parameters)
    machine = order.equipment_id
    for ask in range(MAX_ASKS):
        resp = api.call("POST", f"/v1/work-orders/{job_id}/assessment",
                        _order_body(order, machine, params, clock, units or {}),
                        headers={"Idempotency-Key": f"{job_id}-{ask}"})
        d = resp["decision"]
        out.steps.append({"equipment_id": machine, **d,
                          "advisories": resp.get("maintenance", {}).get("advisories", []),
                          "considered": resp.get("reroute", {}).get("considered", []),
                          "excluded": [e["equipment_id"] for e in
                                       resp.get("reroute", {}).get("excluded", [])]})
        kind = d["type"]
        if kind not in FOLLOW or ask == MAX_ASKS - 1:
            break
        if kind == "RELEASE_WITH_ADJUSTMENT":
            change = {p["id"]: p["to"] for p in d["adjustment"]["parameters"]}
            params.update(change)
            out.actions.append("adjust " + ", ".join(
                f"{p['id']} {_num(p['from'])}->{_num(p['to'])}"
                for p in d["adjustment"]["parameters"]))
        elif kind == "MAINTAIN_FIRST":
            mf = d["maintenance_first"]
            _patch_state(api, machine, mf["state_after"], clock)
            out.actions.append(f"{mf['action']} on {machine}")
        else:  # REROUTE
            machine = d["alternates"][0]["equipment_id"]
            out.actions.append(f"reroute to {machine}")
    if out.final["type"] != "RELEASE" and out.final["type"] not in (
            "RELEASE_WITH_ADJUSTMENT",):
        out.actions.append("held for a person" if out.final["type"] in (
            "HOLD_FOR_REVIEW", "UNDECIDED") else "gave up")
        return out
    if out.final["type"] == "RELEASE_WITH_ADJUSTMENT":  # last ask: take it as proposed
        params.update({p["id"]: p["to"] for p in out.final["adjustment"]["parameters"]})
    asset = api.call("GET", _path(machine))
    values = {**params, **asset["environment"], **asset["machine"], **asset["state"]}
    kpis = run(values, order.planned_quantity)
    out.ran_on, out.kpis = machine, kpis
    broken = kpis.get("tool_broken_end", 0.0) > 0.5
    advised = any(a["action"] == "replace_tool" for a in out.final["advisories"])
    changed = broken or advised
    body: dict[str, Any] = {
        "equipment_id": machine,
        "job_response_id": f"{job_id}/JR",
        "result": "Unsuccessful" if broken else "Successful",
        "actual_end_time": clock.isoformat(),
        "good_quantity": round(kpis.get("parts_completed", order.planned_quantity)),
        # The FMU reports one value per characteristic over the order: one sample each,
        # taken when the order ended.
        "samples": [
            {"characteristic_id": c, "value": kpis[kpi], "unit": unit,
             "measured_at": clock.isoformat()}
            for kpi, c, unit in chars if kpi in kpis],
        "tool_broken": broken,
    }
    if changed:
        body["tools"] = {"changes": [{"reason": "broken" if broken else "worn",
                                      "at": clock.isoformat()}]}
    if machine in probes and not changed and "tool_wear_end" in kpis:
        body["measured_state"] = {"tool_wear": min(1.0, kpis["tool_wear_end"])}
    out.completion = api.call("POST", f"/v1/work-orders/{job_id}/completion", body,
                              headers={"Idempotency-Key": f"{job_id}-done"})
    if broken:
        out.actions.append("tool broke")
    if changed:
        out.actions.append("tool replaced after the order")
    return out


def _num(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def play(api: Api, shift: Shift, run: Runner, chars: list[Chars], *, prefix: str,
         echo: Callable[[str], None] = print, units: Units | None = None) -> list[Outcome]:
    """Register the machines and play every order; print one line per order as it ends."""
    now = datetime.now(UTC)
    register(api, shift, now)
    probes = {m.equipment_id for m in shift.machines if m.tool_probe}
    outcomes = []
    echo(_row(("order", "machine", "material", "qty", "decision", "then", "ran on",
               "reasons")))
    for n, order in enumerate(shift.orders):
        o = play_order(api, order, f"{prefix}{order.job_order_id}", run, chars, probes,
                       now + timedelta(minutes=30 * n), units)
        outcomes.append(o)
        echo(_order_line(o))
    return outcomes


WIDTHS = (7, 8, 16, 3, 23, 16, 7)


def _row(cells: tuple[str, ...], widths: tuple[int, ...] = WIDTHS) -> str:
    """Cells padded to ``widths``; the cells past them as they are."""
    parts = [c.ljust(w) for c, w in zip(cells, widths, strict=False)]
    return "  ".join(parts + list(cells[len(widths):])).rstrip()


def _order_line(o: Outcome) -> str:
    first = o.steps[0]
    chain = " > ".join(s["type"] for s in o.steps[1:])
    return _row((o.order.job_order_id, o.order.equipment_id,
                 str(o.order.parameters.get("material", "")), _num(o.order.planned_quantity),
                 first["type"], chain or "-", o.ran_on or "held",
                 ", ".join(first["reason_codes"])))


def report(outcomes: list[Outcome], assets: list[dict[str, Any]], events: dict[str, int],
           units: dict[str, str], echo: Callable[[str], None] = print) -> None:
    """The story of each order, the machines at the end and the events the shift raised."""
    echo("")
    echo("Why, what the MES did, and what the shop floor (the FMU) measured:")
    for o in outcomes:
        echo(f"  {o.order.job_order_id}  {o.order.note}".rstrip())
        for n, step in enumerate(o.steps):
            echo(f"      {step['equipment_id']} {step['type']}: {step['explanation']}")
            if n < len(o.steps) - 1 and n < len(o.actions):
                echo(f"      -> {o.actions[n]}")
        if o.kpis is not None and o.completion is not None:
            meas = ", ".join(
                f"{r['characteristic_id']} {r['measured']:.3g} {units.get(r['kpi'], '')} "
                f"(predicted {r['predicted']:.3g}, "
                f"{'inside' if r['inside'] else 'OUTSIDE'} its interval)"
                for r in o.completion["residuals"])
            echo(f"      ran on {o.ran_on}: {int(o.kpis.get('parts_completed', 0))} parts; "
                 f"measured {meas}")
        for extra in o.actions[len(o.steps) - 1:]:
            echo(f"      -> {extra}")
    echo("")
    echo("Asset states at the end of the shift:")
    head = ("machine", "health", "index", "VB mm", "bearing", "parts", "advisories")
    w = (8, 20, 5, 6, 7, 5)
    echo("  " + _row(head, w))
    for a in assets:
        adv = ", ".join(sorted({x["action"] for x in a.get("advisories", [])})) or "-"
        st = a["state"]
        echo("  " + _row((a["equipment_id"], a["device_health"], f"{a['health_index']:.2f}",
                          f"{st.get('tool_wear', float('nan')):.3f}",
                          f"{st.get('bearing_damage', float('nan')):.3f}",
                          str(a["parts_made"]), adv), w))
    echo("")
    echo("Events emitted: " + ", ".join(f"{k} {v}" for k, v in sorted(events.items())))
