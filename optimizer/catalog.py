"""The equipment and workload catalog: data files in models/, validated here.

Every entry carries its units in its field names and a `source`. An instance can
override fields of an entry or add entries (catalog_overrides), so a planner
with a quote changes one line.
"""
from __future__ import annotations

import copy
from importlib import resources
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator

from .strict import StrictModel

CATALOG_SECTIONS = ("accelerators", "scale_up_domains", "cables", "dci_optics",
                    "line_systems", "llm_presets")


class Entry(StrictModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    source: str = Field(min_length=3)


class Accelerator(Entry):
    peak_dense_bf16_tflops: PositiveFloat
    hbm_gb: PositiveFloat
    hbm_bandwidth_gbps: PositiveFloat
    power_w: PositiveFloat
    scale_out_nic_gbps: PositiveFloat
    achievable_gemm_fraction: float = Field(gt=0, le=1)
    calibration_source: str
    # HBM bytes the memory-bound non-GEMM kernels move per stored activation byte
    # (optimizer/performance.py, step-time model): counted, not fitted, kept with the calibration
    nongemm_hbm_bytes_per_activation_byte: PositiveFloat
    nongemm_source: str = Field(min_length=3)


class ConnectionClass(StrictModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    name: str
    scope: Literal["scale_up", "scale_out"]
    port_gbps: PositiveFloat
    lane_gbps: PositiveFloat
    links_per_accelerator: PositiveFloat
    default_length_m: PositiveFloat


class ScaleUpDomain(Entry):
    accelerator: str
    accelerators_per_domain: PositiveInt
    scale_up_gbps_per_accelerator: PositiveFloat
    domain_power_w: PositiveFloat
    connection_classes: list[ConnectionClass]

    @property
    def power_w_per_accelerator(self) -> float:
        return self.domain_power_w / self.accelerators_per_domain


class Cable(Entry):
    medium: Literal["passive_copper", "active_copper", "optical"]
    port_gbps: PositiveFloat
    lane_gbps: PositiveFloat
    reach_m: PositiveFloat
    power_w_per_link: float = Field(ge=0)
    price_usd_per_link: float = Field(ge=0)


class DciOptic(Entry):
    module: str
    rate_gbps: PositiveFloat
    spectral_width_ghz: Optional[PositiveFloat]
    reach_km: PositiveFloat
    power_w: float = Field(ge=0)
    price_usd: float = Field(ge=0)
    confidence: Literal["public", "soft", "illustrative"]

    @property
    def is_dwdm(self) -> bool:
        return self.spectral_width_ghz is not None


class LineSystem(Entry):
    usable_ghz: PositiveFloat
    terminal_price_usd_per_pair_end: float = Field(ge=0)
    terminal_power_w_per_pair_end: float = Field(ge=0)
    inline_amplifier_price_usd: float = Field(ge=0)
    inline_amplifier_power_w: float = Field(ge=0)
    span_km: PositiveFloat
    fiber_iru_usd_per_pair_km: float = Field(ge=0)


class LlmPreset(Entry):
    layers: PositiveInt
    hidden: PositiveInt
    heads: PositiveInt
    kv_heads: Optional[PositiveInt] = None
    ffn_hidden: Optional[PositiveInt] = None
    mlp: Literal["gelu", "swiglu"] = "gelu"
    seq_len: PositiveInt
    vocab: PositiveInt
    global_batch_sequences: PositiveInt
    params_b: Optional[PositiveFloat] = None

    @model_validator(mode="after")
    def _heads_divide_hidden(self):
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        if self.kv_heads is not None and self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})")
        return self


ENTRY_TYPES: dict[str, type[Entry]] = {
    "accelerators": Accelerator,
    "scale_up_domains": ScaleUpDomain,
    "cables": Cable,
    "dci_optics": DciOptic,
    "line_systems": LineSystem,
    "llm_presets": LlmPreset,
}


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    accelerators: dict[str, Accelerator]
    scale_up_domains: dict[str, ScaleUpDomain]
    cables: dict[str, Cable]
    dci_optics: dict[str, DciOptic]
    line_systems: dict[str, LineSystem]
    llm_presets: dict[str, LlmPreset]

    def accelerator_of(self, domain_name: str) -> Accelerator:
        return self.accelerators[self.scale_up_domains[domain_name].accelerator]


def catalog_file(section: str):
    """The shipped catalog file: inside the installed wheel (optimizer/models),
    or the source tree's top-level models/ when running from a checkout."""
    try:
        return resources.files("optimizer.models").joinpath(f"{section}.yaml")
    except ModuleNotFoundError:
        from pathlib import Path
        return Path(__file__).resolve().parent.parent / "models" / f"{section}.yaml"


def load_raw_catalog() -> dict:
    """The shipped catalog as plain dicts (section -> name -> fields)."""
    from .yamlio import load_yaml

    raw = {}
    for section in CATALOG_SECTIONS:
        ref = catalog_file(section)
        data, _ = load_yaml(f"models/{section}.yaml", ref.read_text(encoding="utf-8"))
        raw[section] = data
    return raw


_RAW_CACHE: dict | None = None


def shipped_raw_catalog() -> dict:
    global _RAW_CACHE
    if _RAW_CACHE is None:
        _RAW_CACHE = load_raw_catalog()
    return copy.deepcopy(_RAW_CACHE)


def merge_overrides(raw: dict, overrides: dict) -> dict:
    """Overrides replace fields of existing entries or add whole new entries."""
    merged = copy.deepcopy(raw)
    for section, entries in (overrides or {}).items():
        for name, fields in (entries or {}).items():
            if name in merged[section] and isinstance(fields, dict):
                merged[section][name] = {**merged[section][name], **fields}
            else:
                merged[section][name] = fields
    return merged


def load_catalog() -> Catalog:
    return Catalog.model_validate(shipped_raw_catalog())
