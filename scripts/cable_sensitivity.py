"""Cable-choice sensitivity: GB200 NVL72 vs Trn2-Ultra64, DAC vs AEC vs AOC,
under a loose and a tight power budget.

Two small one-region cases (two campuses 20 km apart, 4,608 accelerators each:
64 NVL72 racks or 72 Trn2 UltraServers, training Llama-3-405B) are swept over
the cable lengths that decide which cable can be used:

- in-rack copper (NVL72 nvlink_spine, Trn2 between_servers): 1.0 m (passive
  DAC reaches) or 2.5 m (only active AEC, 2.75 m, reaches);
- scale-out nic_to_leaf: 1.5 m (DAC-400G), 5 m (AEC-400G) or 30 m (optics:
  AOC-400G at 10 W vs SR4-400G at 20 W but cheaper);
- campus power budget: loose (1.5x what the installed racks draw) or tight
  (0.8x), where every watt a cable draws is a watt no accelerator gets.

Prints per scenario the cable chosen per class, cable capex and power, and the
accelerators, tokens/s and MFU the plan reaches.

    python scripts/cable_sensitivity.py [--out out/cable-sensitivity] [--workers 2]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from optimizer.catalog import load_catalog  # noqa: E402
from optimizer.scenarios import format_table, load_spec, run_sweep  # noqa: E402

ACCELERATORS_PER_CAMPUS = 4608      # 64 x 72 = 72 x 64: whole domains of both platforms
PUE = 1.2
PLATFORMS = {                      # scale-up domain -> its in-rack copper connection class
    "GB200-NVL72": "nvlink_spine",
    "Trn2-Ultra64": "between_servers",
}

BASE = """\
# written by scripts/cable_sensitivity.py
name: cable-choice-{domain}
description: two campuses of {domain}, Llama-3-405B, cable lengths and power swept
objective: max-throughput
pue: {pue}
regions:
  - name: metro
    campuses:
      - {{name: east, power_budget_mw: {mw}, scale_up_domain: {domain}, accelerators: {n}}}
      - {{name: west, power_budget_mw: {mw}, scale_up_domain: {domain}, accelerators: {n}}}
routes:
  - {{a: east, b: west, distance_km: 20, fiber_pairs_available: 96}}
job:
  model: Llama-3-405B
  efficiency_loss_bound: {{campus: 0.05, intra_region: 0.05, inter_region: 0.10}}
targets: {{intra_region_pbps: 0.2, inter_region_pbps: 0}}
"""

SPEC = """\
# written by scripts/cable_sensitivity.py
base: {base}
name: cable-choice-{domain}
zip:
  - name: power-mw
    axes:
      - {{path: "regions[0].campuses[0].power_budget_mw", values: [{loose}, {tight}]}}
      - {{path: "regions[0].campuses[1].power_budget_mw", values: [{loose}, {tight}]}}
  - name: in-rack-m
    axes:
      - {{path: "regions[0].campuses[0].fabric_lengths_m.{in_rack}", values: [1.0, 2.5]}}
      - {{path: "regions[0].campuses[1].fabric_lengths_m.{in_rack}", values: [1.0, 2.5]}}
  - name: nic-to-leaf-m
    axes:
      - {{path: "regions[0].campuses[0].fabric_lengths_m.nic_to_leaf", values: [1.5, 5, 30]}}
      - {{path: "regions[0].campuses[1].fabric_lengths_m.nic_to_leaf", values: [1.5, 5, 30]}}
"""


def racks_mw(domain: str) -> float:
    """What the installed racks draw at the facility meter (IT x PUE), MW."""
    dom = load_catalog().scale_up_domains[domain]
    return ACCELERATORS_PER_CAMPUS * dom.power_w_per_accelerator * PUE / 1e6


def view(record: dict, domain: str, loose: float) -> dict:
    ov = record["overrides"]
    in_rack = PLATFORMS[domain]
    row = {"platform": domain,
           "power": f"{'loose' if ov['regions[0].campuses[0].power_budget_mw'] == loose else 'tight'} "
                    f"{ov['regions[0].campuses[0].power_budget_mw']:g} MW",
           "in_rack_m": ov[f"regions[0].campuses[0].fabric_lengths_m.{in_rack}"],
           "nic_to_leaf_m": ov["regions[0].campuses[0].fabric_lengths_m.nic_to_leaf"],
           "status": record["status"]}
    plan = record.get("result") or {}
    if record["status"] not in ("optimal", "feasible"):
        row["note"] = record.get("reason", "")
        return row
    chosen: dict[str, set] = {}
    for c in plan["cables"]:
        chosen.setdefault(c["connection"], set()).add(c["type"])
    row.update({
        "in_rack_cable": "/".join(sorted(chosen.get(in_rack, {"-"}))),
        "nic_to_leaf_cable": "/".join(sorted(chosen.get("nic_to_leaf", {"-"}))),
        "capex_cables_usd": plan["totals"]["capex_usd_by_category"].get("cables"),
        "cable_power_mw": sum(c["power_w"] for c in plan["cables"]) / 1e6,
        "accelerators": plan["parallelism"]["accelerators"],
        "tp": plan["parallelism"]["tp"], "pp": plan["parallelism"]["pp"], "dp": plan["parallelism"]["dp"],
        "tokens_per_s": plan["performance"]["tokens_per_s"], "mfu": plan["performance"]["mfu"],
    })
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "out" / "cable-sensitivity"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--time-limit", type=float, default=None, help="per scenario, s")
    args = ap.parse_args(argv)

    out = Path(args.out)
    rows = []
    for domain, in_rack in PLATFORMS.items():
        need = racks_mw(domain)
        loose, tight = round(1.5 * need, 1), round(0.8 * need, 1)
        d = out / domain
        d.mkdir(parents=True, exist_ok=True)
        (d / "base.yaml").write_text(BASE.format(domain=domain, pue=PUE, mw=loose, n=ACCELERATORS_PER_CAMPUS))
        (d / "spec.yaml").write_text(SPEC.format(base="base.yaml", domain=domain, loose=loose, tight=tight,
                                                 in_rack=in_rack))
        run = run_sweep(load_spec(d / "spec.yaml", time_limit_s=args.time_limit), d / "sweep",
                        workers=args.workers, progress="auto")
        rows += [view(json.loads((d / "sweep" / "scenarios" / f"{r['id']}.json").read_text()), domain, loose)
                 for r in run.rows]
    cols = ["platform", "power", "in_rack_m", "nic_to_leaf_m", "status", "in_rack_cable", "nic_to_leaf_cable",
            "capex_cables_usd", "cable_power_mw", "accelerators", "tp", "pp", "dp", "tokens_per_s", "mfu"]
    print(f"Cable choice: {ACCELERATORS_PER_CAMPUS:,} accelerators per campus, two campuses, Llama-3-405B; "
          "loose = 1.5x, tight = 0.8x the racks' draw\n")
    print(format_table(rows, cols, "text"), end="")
    (out / "cable-sensitivity.md").write_text(
        "# Cable-choice sensitivity\n\n" + format_table(rows, cols, "md"), encoding="utf-8")
    (out / "cable-sensitivity.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print(f"\nwrote {out}/cable-sensitivity.md, .json and one sweep per platform", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
