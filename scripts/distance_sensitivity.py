"""Distance sensitivity of the default instance: what the inter-region distance
does to the DCI module mix, the cost and the training efficiency.

Sets both inter-region routes of instances/us-two-regions.yaml
(council-bluffs - new-albany and lincoln - columbus, ~1,050 / 1,150 km in the
base) to 10, 100, 500, 1,000 and 2,000 km, solves each scenario with
`dcopt sweep`, and prints per distance: the modules on the inter-region
routes, their capex (modules, terminals, amplifiers, leased fiber), total
network capex, tokens/s, MFU and the efficiency loss against one site.

10 and 100 km between the two regions are hypothetical what-ifs (the real
regions are ~1,000 km apart): the routes keep the inter_region scope, so the
10 % inter-region loss bound applies, but the reach classes (LR4 at 10 km, ZR
at 100 km) are those of a metro link.

    python scripts/distance_sensitivity.py [--out out/distance-sensitivity] [--workers 2]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from optimizer.scenarios import format_table, load_spec, run_sweep  # noqa: E402

DISTANCES_KM = [10, 100, 500, 1000, 2000]
HYPOTHETICAL_KM = {10, 100}

SPEC = """\
# written by scripts/distance_sensitivity.py
base: {base}
name: inter-region-distance
description: both inter-region routes at 10 / 100 / 500 / 1,000 / 2,000 km
zip:
  - name: inter-region-km
    axes:
      - path: routes[8].distance_km      # council-bluffs - new-albany
        values: {values}
      - path: routes[9].distance_km      # lincoln - columbus
        values: {values}
"""


def inter_region_view(record: dict) -> dict:
    """Figures of one scenario that concern the links between the regions."""
    row = {"distance_km": record["overrides"]["routes[8].distance_km"], "status": record["status"]}
    plan = record.get("result") or {}
    if record["status"] not in ("optimal", "feasible"):
        row["note"] = record.get("reason", "")
        return row
    links = [l for l in plan["dci_links"] if l["scope"] == "inter_region"]
    mix: dict[str, int] = {}
    pairs = 0
    for link in links:
        for d in link.get("detail", []):
            mix[f"{d['module']}/{d['band_plan'] or 'grey'}"] = mix.get(f"{d['module']}/{d['band_plan'] or 'grey'}", 0) + d["modules"]
            pairs += d["fiber_pairs"]
    perf = plan["performance"]
    row.update({
        "inter_region_modules": " ".join(f"{m}:{n}" for m, n in sorted(mix.items(), key=lambda x: -x[1])),
        "fiber_pairs": pairs,
        "amplifier_sites": max((d.get("inline_amplifier_sites", 0) for l in links for d in l.get("detail", [])), default=0),
        # a link's cost_usd: modules, terminals, amplifiers and the leased fiber
        "capex_inter_region_usd": sum(l["cost_usd"] for l in links),
        "capex_usd": plan["totals"]["capex_usd"],
        "tp": plan["parallelism"]["tp"], "pp": plan["parallelism"]["pp"], "dp": plan["parallelism"]["dp"],
        "tokens_per_s": perf["tokens_per_s"], "mfu": perf["mfu"], "efficiency_loss": perf["efficiency_loss"],
        "active_regions": perf.get("active_regions"),
        "note": "hypothetical" if row["distance_km"] in HYPOTHETICAL_KM else "",
    })
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "out" / "distance-sensitivity"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--time-limit", type=float, default=None, help="per scenario, s")
    args = ap.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spec_path = out / "spec.yaml"
    spec_path.write_text(SPEC.format(base=ROOT / "instances" / "us-two-regions.yaml", values=DISTANCES_KM))
    run = run_sweep(load_spec(spec_path, time_limit_s=args.time_limit), out, workers=args.workers, progress="auto")
    rows = [inter_region_view(json.loads((out / "scenarios" / f"{r['id']}.json").read_text())) for r in run.rows]
    cols = ["distance_km", "status", "inter_region_modules", "fiber_pairs", "amplifier_sites",
            "capex_inter_region_usd", "capex_usd", "tp", "pp", "dp", "tokens_per_s", "mfu", "efficiency_loss", "note"]
    table = format_table(rows, cols, "text")
    print("Inter-region distance sensitivity, default instance (us-two-regions), both inter-region routes set to d")
    print("(10 and 100 km are hypothetical what-ifs: the regions are ~1,000 km apart)\n")
    print(table, end="")
    (out / "distance-sensitivity.md").write_text(
        "# Inter-region distance sensitivity (us-two-regions)\n\n"
        "Both inter-region routes set to the distance; 10 and 100 km are hypothetical what-ifs.\n\n"
        + format_table(rows, cols, "md"), encoding="utf-8")
    (out / "distance-sensitivity.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print(f"\nwrote {out}/distance-sensitivity.md, .json and the sweep (summary.csv, scenarios/)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
