"""Instance files: a multi-campus training build-out described in YAML.

Validated at the door with pydantic (shape, types, ranges) and then with
cross-field checks (catalog names, route endpoints, reach, cable reach). Every
problem is reported with file, line, field path and what is expected.
"""
from __future__ import annotations

import math
import reprlib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import (BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt,
                      ValidationError, field_validator, model_validator)

from . import catalog as cat
from .errors import InputError, Problem, did_you_mean
from .strict import StrictModel
from .yamlio import LineMap, load_yaml

SCHEMA_VERSION = "1.0"
BYTES_PER_ELEMENT = {"bf16": 2, "fp16": 2}
SCOPES = ("campus", "intra_region", "inter_region")


class _Model(StrictModel):
    pass


class Campus(_Model):
    name: str = Field(min_length=1, description="unique across the instance")
    power_budget_mw: PositiveFloat = Field(description="IT + facility power available to the job, MW")
    scale_up_domain: str = Field(description="catalog scale_up_domains entry, e.g. GB200-NVL72")
    domains: Optional[PositiveInt] = Field(None, description="scale-up domains (racks/servers) on site")
    accelerators: Optional[PositiveInt] = Field(None, description="accelerators on site (a multiple of the domain size)")
    pue: Optional[float] = Field(None, ge=1.0, le=3.0, description="facility overhead; defaults to the instance's pue")
    fabric_lengths_m: dict[str, PositiveFloat] = Field(
        default_factory=dict, description="cable length per connection class, m (default: the catalog's)")

    @model_validator(mode="after")
    def _count_given(self):
        if self.domains is None and self.accelerators is None:
            raise ValueError("give either 'domains' or 'accelerators'")
        return self


class Region(_Model):
    name: str = Field(min_length=1)
    campuses: list[Campus] = Field(min_length=1)
    intra_region_target_pbps: Optional[float] = Field(
        None, ge=0, description="overrides targets.intra_region_pbps for this region")


class Route(_Model):
    a: str
    b: str
    distance_km: PositiveFloat
    fiber_pairs_available: PositiveInt
    fiber: Literal["existing", "leasable"] = Field(
        "leasable", description="existing fiber costs nothing; leasable pays the IRU per pair-km")
    band_plans: Optional[list[str]] = Field(None, description="allowed line_systems entries (default: all)")
    modules: Optional[list[str]] = Field(None, description="allowed dci_optics entries on this route (default: all that reach)")


class ModelDims(_Model):
    layers: PositiveInt
    hidden: PositiveInt
    heads: PositiveInt
    kv_heads: Optional[PositiveInt] = None
    ffn_hidden: Optional[PositiveInt] = None
    mlp: Literal["gelu", "swiglu"] = "gelu"
    seq_len: PositiveInt
    vocab: PositiveInt
    global_batch_sequences: PositiveInt


class EfficiencyLossBound(_Model):
    campus: float = Field(gt=0, lt=1, description="building-to-building links (<= network.campus_scope_max_km)")
    intra_region: float = Field(gt=0, lt=1)
    inter_region: float = Field(gt=0, lt=1)


class Job(_Model):
    model: Union[str, ModelDims] = Field(description="llm_presets name or explicit dimensions")
    global_batch_sequences: Optional[PositiveInt] = Field(None, description="overrides the preset's batch")
    precision: Literal["bf16", "fp16"] = "bf16"
    efficiency_loss_bound: EfficiencyLossBound
    min_tokens_per_s: Optional[PositiveFloat] = Field(None, description="throughput the min-cost plan must reach")
    min_accelerators: Optional[PositiveInt] = Field(None, description="accelerators the min-cost plan must use")
    max_accelerators: Optional[PositiveInt] = Field(None, description="cap on accelerators the job may use")
    hbm_reserve_fraction: float = Field(0.10, ge=0, lt=1, description="HBM kept free (fragmentation, workspace)")
    # empty lists leave no split to enumerate: a bad input, not an infeasible job
    micro_batch_sizes: list[PositiveInt] = Field(default_factory=lambda: [1, 2, 4, 8], min_length=1)
    interleave_options: list[PositiveInt] = Field(default_factory=lambda: [1, 2], min_length=1)
    recompute_modes: list[Literal["none", "selective", "full"]] = Field(
        default_factory=lambda: ["none", "selective", "full"], min_length=1)
    sequence_parallel: bool = Field(True, description="Megatron sequence parallelism inside TP (activations / t)")
    distributed_optimizer: bool = Field(
        False, description="shard Adam states over DP (ZeRO-1, Megatron --use-distributed-optimizer); "
                           "DCI bytes are unchanged (reduce-scatter + all-gather = all-reduce)")
    max_candidate_splits: PositiveInt = Field(
        24, description="splits kept for the MILP (Pareto front of accelerators vs tokens/s)")


class Targets(_Model):
    intra_region_pbps: float = Field(ge=0, description="aggregate campus-to-campus DCI capacity per region")
    inter_region_pbps: float = Field(ge=0, description="capacity between every pair of regions")


class Budgets(_Model):
    capex_usd: Optional[PositiveFloat] = Field(None, description="network capex cap (DCI + cables), USD")


class Network(_Model):
    link_utilization_max: float = Field(0.8, gt=0, le=1, description="job traffic may use at most this share of a link")
    k_paths: PositiveInt = Field(3, le=10, description="candidate fiber paths per site pair")
    campus_scope_max_km: PositiveFloat = Field(10, description="routes this short inside a region are building links")
    latency_us_per_km: PositiveFloat = Field(4.9, description="one-way light delay in fiber")
    allow_split_pipelines: bool = Field(
        True, description="let a pipeline's PP stages span two campuses of a region (half each)")


class Instance(_Model):
    name: str = Field(min_length=1)
    description: str = ""
    objective: Literal["max-throughput", "min-cost"] = "max-throughput"
    pue: float = Field(ge=1.0, le=3.0, description="facility overhead applied to IT power")
    regions: list[Region] = Field(min_length=1)
    routes: list[Route] = Field(default_factory=list)
    job: Job
    targets: Targets
    budgets: Budgets = Field(default_factory=Budgets)
    network: Network = Field(default_factory=Network)
    catalog_overrides: dict[Literal["accelerators", "scale_up_domains", "cables", "dci_optics",
                                    "line_systems", "llm_presets"], dict[str, dict[str, Any]]] = Field(
        default_factory=dict, description="replace fields of catalog entries or add entries")


@dataclass
class LoadedInstance:
    """A validated instance with its resolved catalog and derived facts."""

    instance: Instance
    catalog: cat.Catalog
    path: str
    raw: dict

    # derived
    @property
    def campuses(self) -> list[Campus]:
        return [c for r in self.instance.regions for c in r.campuses]

    @property
    def region_of(self) -> dict[str, str]:
        return {c.name: r.name for r in self.instance.regions for c in r.campuses}

    def accelerators_at(self, campus: Campus) -> int:
        size = self.catalog.scale_up_domains[campus.scale_up_domain].accelerators_per_domain
        return campus.accelerators if campus.accelerators is not None else campus.domains * size

    def campus_pue(self, campus: Campus) -> float:
        return campus.pue if campus.pue is not None else self.instance.pue

    def route_scope(self, route: Route) -> str:
        ra, rb = self.region_of[route.a], self.region_of[route.b]
        if ra != rb:
            return "inter_region"
        return "campus" if route.distance_km <= self.instance.network.campus_scope_max_km else "intra_region"

    def intra_target_pbps(self, region: Region) -> float:
        if region.intra_region_target_pbps is not None:
            return region.intra_region_target_pbps
        return self.instance.targets.intra_region_pbps

    @property
    def model_dims(self) -> ModelDims:
        job = self.instance.job
        if isinstance(job.model, ModelDims):
            dims = job.model
        else:
            p = self.catalog.llm_presets[job.model]
            dims = ModelDims(**p.model_dump(exclude={"source", "params_b"}))
        if job.global_batch_sequences is not None:
            dims = dims.model_copy(update={"global_batch_sequences": job.global_batch_sequences})
        return dims

    @property
    def bytes_per_element(self) -> int:
        return BYTES_PER_ELEMENT[self.instance.job.precision]

    def resolved(self) -> dict:
        """The instance as used: defaults filled in, for the record of a run."""
        return self.instance.model_dump(mode="json")


# ---------------------------------------------------------------- messages

_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother = 80, 80


def _describe_pydantic_error(err: dict) -> str:
    kind, ctx, got = err["type"], err.get("ctx", {}), err.get("input")
    # bounded: the input may be a huge list or mapping
    shown = _SHORT.repr(got) if isinstance(got, (str, list, dict, tuple, set)) else got
    if kind == "greater_than":
        return f"must be > {ctx['gt']} (got {shown})"
    if kind == "greater_than_equal":
        return f"must be >= {ctx['ge']} (got {shown})"
    if kind == "less_than":
        return f"must be < {ctx['lt']} (got {shown})"
    if kind == "less_than_equal":
        return f"must be <= {ctx['le']} (got {shown})"
    if kind == "missing":
        return "required field is missing"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"must be a whole number (got {shown})"
    if kind in ("float_parsing", "float_type"):
        return f"must be a number (got {shown})"
    if kind in ("string_type",):
        return f"must be text (got {shown})"
    if kind in ("list_type",):
        return f"must be a list (got {type(got).__name__})"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping of fields (got {type(got).__name__})"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')} (got {shown})"
    if kind == "finite_number":
        return f"must be a finite number (got {shown})"
    if kind == "invalid_key":
        return f"field names must be text (got {shown})"
    if kind == "too_short":
        return "must not be empty"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return f"{err['msg']} (got {shown})"


def format_path(loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _clean_loc(loc: tuple) -> tuple:
    # pydantic adds the union member name ('str', 'ModelDims') into locations
    return tuple(p for p in loc if p not in ("str", "ModelDims", "function-after[_count_given()]", "[key]"))


def _pydantic_problems(exc: ValidationError, fname: str, lines: LineMap, model_fields=None) -> list[Problem]:
    problems = []
    seen = set()
    for err in exc.errors():
        loc = _clean_loc(err["loc"])
        # a union 'model' field reports one error per member; keep the useful one
        if loc and loc[:2] == ("job", "model") and err["type"] == "string_type":
            continue
        msg = _describe_pydantic_error(err)
        if loc == ("job", "model") and err["type"] in ("model_type", "model_attributes_type"):
            msg = f"must be an llm_presets name (e.g. GPT-3-175B) or a mapping of model dimensions (got {type(err.get('input')).__name__})"
        if err["type"] == "extra_forbidden":
            msg = f"unknown field '{loc[-1]}'"
            if model_fields:
                parent = _fields_at(loc[:-1])
                if parent:
                    msg = did_you_mean(loc[-1], parent).replace("unknown name", "unknown field")
        key = (loc, msg)
        if key in seen:
            continue
        seen.add(key)
        problems.append(Problem(fname, format_path(loc), msg, lines.line(loc)))
    return problems


def _fields_at(loc: tuple, root: Any = None) -> list[str] | None:
    """Field names expected at a location of the instance (or of a root model), for suggestions."""
    model: Any = root or Instance
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None:
            return None
        ann = field.annotation
        model = _inner_model(ann)
        if model is None:
            return None
    return list(model.model_fields) if hasattr(model, "model_fields") else None


def _inner_model(ann):
    import typing
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in typing.get_args(ann):
        m = _inner_model(arg)
        if m is not None:
            return m
    return None


# ---------------------------------------------------------------- loading

def load_instance(path: str | Path, text: str | None = None) -> LoadedInstance:
    """Load, validate and cross-check an instance file. Raises InputError."""
    fname = str(path)
    data, lines = load_yaml(path, text)
    if not isinstance(data, dict):
        raise InputError([Problem(fname, "", f"top level must be a mapping of fields (got {type(data).__name__})", 1)])
    return validate_instance_data(data, fname, lines)


def validate_instance_data(data: dict, fname: str, lines: LineMap | None = None) -> LoadedInstance:
    """The checks of load_instance() on a mapping already in memory (a sweep's scenario:
    no YAML round trip); without a LineMap the messages carry no line. Raises InputError."""
    lines = lines if lines is not None else LineMap(None)
    try:
        inst = Instance.model_validate(data)
    except ValidationError as exc:
        raise InputError(_pydantic_problems(exc, fname, lines, model_fields=True))
    catalog = _resolve_catalog(inst, fname, lines)
    problems = cross_check(inst, catalog, fname, lines)
    if problems:
        raise InputError(problems)
    return LoadedInstance(inst, catalog, fname, data)


def _resolve_catalog(inst: Instance, fname: str, lines: LineMap) -> cat.Catalog:
    raw = cat.merge_overrides(cat.shipped_raw_catalog(), inst.catalog_overrides)
    try:
        return cat.Catalog.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ("catalog_overrides",) + tuple(err["loc"])
            msg = _describe_pydantic_error(err)
            if err["type"] == "extra_forbidden":
                section = err["loc"][0]
                fields = _fields_at(err["loc"][2:-1], cat.ENTRY_TYPES[section]) or cat.ENTRY_TYPES[section].model_fields
                msg = did_you_mean(err["loc"][-1], fields).replace(
                    "unknown name", "unknown field")
            elif err["type"] == "missing" and err["loc"][1] not in cat.shipped_raw_catalog()[err["loc"][0]]:
                msg = "required field is missing (a new catalog entry needs every field)"
            problems.append(Problem(fname, format_path(loc), msg, lines.line(loc)))
        raise InputError(problems)


def cross_check(inst: Instance, catalog: cat.Catalog, fname: str, lines: LineMap) -> list[Problem]:
    problems: list[Problem] = []

    def add(loc: tuple, msg: str):
        problems.append(Problem(fname, format_path(loc), msg, lines.line(loc)))

    # names unique
    seen_regions: dict[str, int] = {}
    seen_campuses: dict[str, tuple] = {}
    domain_types = set()
    for ri, region in enumerate(inst.regions):
        if region.name in seen_regions:
            add(("regions", ri, "name"), f"duplicate region name '{region.name}' (also regions[{seen_regions[region.name]}])")
        seen_regions.setdefault(region.name, ri)
        for ci, campus in enumerate(region.campuses):
            loc = ("regions", ri, "campuses", ci)
            if campus.name in seen_campuses:
                add(loc + ("name",), f"duplicate campus name '{campus.name}' (also {format_path(seen_campuses[campus.name])}); campus names must be unique")
            seen_campuses.setdefault(campus.name, loc)
            if campus.scale_up_domain not in catalog.scale_up_domains:
                add(loc + ("scale_up_domain",), did_you_mean(campus.scale_up_domain, catalog.scale_up_domains))
                continue
            domain = catalog.scale_up_domains[campus.scale_up_domain]
            domain_types.add(campus.scale_up_domain)
            size = domain.accelerators_per_domain
            if campus.accelerators is not None:
                if campus.accelerators % size:
                    add(loc + ("accelerators",), f"{campus.accelerators} accelerators is not a whole number of {campus.scale_up_domain} domains ({size} each); use a multiple of {size}")
                elif campus.domains is not None and campus.domains * size != campus.accelerators:
                    add(loc + ("domains",), f"{campus.domains} domains x {size} = {campus.domains * size} accelerators, but accelerators says {campus.accelerators}; give one of the two")
            classes = {c.name: c for c in domain.connection_classes}
            for cname, length in campus.fabric_lengths_m.items():
                if cname not in classes:
                    add(loc + ("fabric_lengths_m", cname), did_you_mean(cname, classes).replace(
                        "unknown name", f"unknown connection class of {campus.scale_up_domain}"))
            for cls in domain.connection_classes:
                length = campus.fabric_lengths_m.get(cls.name, cls.default_length_m)
                fits = [k for k, c in catalog.cables.items()
                        if c.port_gbps == cls.port_gbps and c.lane_gbps == cls.lane_gbps and c.reach_m >= length]
                if not fits:
                    best = max((c.reach_m for c in catalog.cables.values()
                                if c.port_gbps == cls.port_gbps and c.lane_gbps == cls.lane_gbps), default=0)
                    add(loc + ("fabric_lengths_m", cls.name),
                        f"{length:g} m: no cable in the catalog for {cls.port_gbps:g}G ports at {cls.lane_gbps:g}G lanes reaches that far (longest {best:g} m); shorten the run or add a cable to catalog_overrides.cables")
    if len(domain_types) > 1:
        add(("regions",), f"campuses use different scale-up domains ({', '.join(sorted(domain_types))}); one job needs one accelerator type: split the build-out into one instance per type")
    for domain_name in domain_types:
        dom = catalog.scale_up_domains[domain_name]
        if dom.accelerator not in catalog.accelerators:
            add(("catalog_overrides", "scale_up_domains", domain_name, "accelerator"),
                did_you_mean(dom.accelerator, catalog.accelerators))

    # routes
    region_of = {c.name: r.name for r in inst.regions for c in r.campuses}
    max_reach = max((o.reach_km for o in catalog.dci_optics.values()), default=0)
    seen_pairs: dict[frozenset, int] = {}
    for i, route in enumerate(inst.routes):
        loc = ("routes", i)
        for end in ("a", "b"):
            name = getattr(route, end)
            if name not in region_of:
                add(loc + (end,), did_you_mean(name, region_of).replace("unknown name", "route to unknown campus"))
        if route.a == route.b:
            add(loc + ("b",), f"route from '{route.a}' to itself; a route joins two different campuses")
        pair = frozenset((route.a, route.b))
        if pair in seen_pairs and route.a != route.b:
            add(loc, f"second route between '{route.a}' and '{route.b}' (also routes[{seen_pairs[pair]}]); give one route with the total fiber_pairs_available")
        seen_pairs.setdefault(pair, i)
        if route.distance_km > max_reach:
            longest = ", ".join(sorted(m for m, o in catalog.dci_optics.items() if o.reach_km == max_reach))
            add(loc + ("distance_km",), f"{route.distance_km:g} km is beyond every DCI module's reach in the catalog (longest {max_reach:g} km: {longest}); regeneration between campuses is not modelled: split the route at a campus or add a longer-reach module to catalog_overrides.dci_optics")
        for j, band in enumerate(route.band_plans or []):
            if band not in catalog.line_systems:
                add(loc + ("band_plans", j), did_you_mean(band, catalog.line_systems))
        for j, module in enumerate(route.modules or []):
            if module not in catalog.dci_optics:
                add(loc + ("modules", j), did_you_mean(module, catalog.dci_optics))
        if route.modules and all(m in catalog.dci_optics for m in route.modules) and \
                max(catalog.dci_optics[m].reach_km for m in route.modules) < route.distance_km <= max_reach:
            best = max(route.modules, key=lambda m: catalog.dci_optics[m].reach_km)
            reaching = sorted((m for m, o in catalog.dci_optics.items() if o.reach_km >= route.distance_km),
                              key=lambda m: (-catalog.dci_optics[m].rate_gbps, m))
            add(loc + ("modules",), f"none of the allowed modules reaches {route.distance_km:g} km (longest: {best}, {catalog.dci_optics[best].reach_km:g} km); allow one that does, e.g. {reaching[0]} ({catalog.dci_optics[reaching[0]].reach_km:g} km)")

    # job
    job = inst.job
    if isinstance(job.model, str) and job.model not in catalog.llm_presets:
        add(("job", "model"), did_you_mean(job.model, catalog.llm_presets))
    if isinstance(job.model, ModelDims):
        dims = job.model
        if dims.hidden % dims.heads:
            add(("job", "model", "heads"), f"hidden ({dims.hidden}) must be a multiple of heads ({dims.heads})")
        if dims.kv_heads is not None and dims.heads % dims.kv_heads:
            add(("job", "model", "kv_heads"), f"heads ({dims.heads}) must be a multiple of kv_heads ({dims.kv_heads})")
    if inst.objective == "min-cost" and job.min_tokens_per_s is None and job.min_accelerators is None:
        add(("job",), "objective min-cost needs a throughput to reach: set job.min_tokens_per_s or job.min_accelerators")
    if job.min_accelerators and job.max_accelerators and job.min_accelerators > job.max_accelerators:
        add(("job", "min_accelerators"), f"{job.min_accelerators} is above job.max_accelerators ({job.max_accelerators})")

    # a target between regions needs them connected
    if inst.targets.inter_region_pbps > 0 and len(inst.regions) > 1 and not problems:
        import networkx as nx
        g = nx.Graph()
        g.add_nodes_from(region_of)
        g.add_edges_from((r.a, r.b) for r in inst.routes)
        comps = {name: k for k, comp in enumerate(nx.connected_components(g)) for name in comp}
        rnames = [r.name for r in inst.regions]
        first = {r.name: r.campuses[0].name for r in inst.regions}
        for x in range(len(rnames)):
            for y in range(x + 1, len(rnames)):
                if comps[first[rnames[x]]] != comps[first[rnames[y]]]:
                    add(("routes",), f"regions '{rnames[x]}' and '{rnames[y]}' are not connected by any chain of fiber routes, but targets.inter_region_pbps is {inst.targets.inter_region_pbps:g}; add a route or set the target to 0")
    for ri, region in enumerate(inst.regions):
        if len(region.campuses) == 1:
            continue
        target = region.intra_region_target_pbps if region.intra_region_target_pbps is not None else inst.targets.intra_region_pbps
        names = {c.name for c in region.campuses}
        if target > 0 and not any(r.a in names and r.b in names for r in inst.routes):
            add(("regions", ri), f"region '{region.name}' has an intra-region target of {target:g} Pbit/s but no route between its campuses")
    return problems


# ---------------------------------------------------------------- summary

def summary(li: LoadedInstance) -> str:
    inst = li.instance
    out = [f"{li.path}: valid", f"instance: {inst.name}" + (f" - {inst.description}" if inst.description else "")]
    total_acc = 0
    total_mw = 0.0
    out.append(f"regions: {len(inst.regions)}, campuses: {len(li.campuses)}, routes: {len(inst.routes)}")
    for region in inst.regions:
        out.append(f"  region {region.name} (intra-region target {li.intra_target_pbps(region):g} Pbit/s)")
        for c in region.campuses:
            n = li.accelerators_at(c)
            total_acc += n
            total_mw += c.power_budget_mw
            dom = li.catalog.scale_up_domains[c.scale_up_domain]
            out.append(f"    campus {c.name}: {n:,} x {dom.accelerator} in {n // dom.accelerators_per_domain:,} {c.scale_up_domain}, power budget {c.power_budget_mw:g} MW, PUE {li.campus_pue(c):g}")
    for r in inst.routes:
        out.append(f"  route {r.a} - {r.b}: {r.distance_km:g} km, {r.fiber_pairs_available} fiber pairs ({r.fiber}), scope {li.route_scope(r)}")
    dims = li.model_dims
    job = inst.job
    name = job.model if isinstance(job.model, str) else "custom"
    out.append(f"job: {name} (L={dims.layers}, h={dims.hidden}, s={dims.seq_len}, batch {dims.global_batch_sequences} sequences, {job.precision})")
    b = job.efficiency_loss_bound
    out.append(f"  efficiency-loss bound: campus {b.campus:.0%}, intra-region {b.intra_region:.0%}, inter-region {b.inter_region:.0%}")
    out.append(f"totals: {total_acc:,} accelerators, {total_mw:,.0f} MW of campus power budgets")
    out.append(f"targets: intra-region {inst.targets.intra_region_pbps:g} Pbit/s per region, inter-region {inst.targets.inter_region_pbps:g} Pbit/s per region pair")
    cap = inst.budgets.capex_usd
    out.append(f"budgets: capex {'unlimited' if cap is None else f'${cap:,.0f}'}; objective {inst.objective}")
    return "\n".join(out)


def instance_json_schema() -> dict:
    schema = Instance.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "dcopt instance"
    return schema
