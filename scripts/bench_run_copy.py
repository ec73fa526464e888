"""Which run copy of the embedded model is fastest on this machine: Q8_0 and BF16 copies, with the bundled adapter
applied at run time or merged in, measured paired (one process, each bench request sent to every configuration in
turn, fresh KV caches), with the rewrites compared. Writes docs/benchmarks-run-copy.md (generated; do not edit).

    python scripts/bench_run_copy.py --repeat 8 --docs docs/benchmarks-run-copy.md

This is how the runtime's choice (``model_source.run_type``: BF16 where llama.cpp multiplies bfloat16 natively,
else Q8_0; the adapter merged out of the box) was measured; run it on an AVX2-only machine to check that choice there.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

from qr_edge import Rewriter
from qr_edge.atomic_file import write_text_atomic
from qr_edge.engine import cpu_features, requantize
from qr_edge.evaluate.bench import machine, requests
from qr_edge.lora_merge import merge_lora
from qr_edge.model_source import bundled_adapter_path, embedded_model_path, run_type

TYPES = ("Q8_0", "BF16")


def build_copies(folder: Path, adapter: str) -> dict[str, tuple[str, str | None]]:
    """Configuration name -> (model file, adapter applied at run time or None)."""
    source = embedded_model_path()
    merged_f32 = folder / "merged.f32.gguf"
    merge_lora(source, adapter, merged_f32)
    configs = {}
    for type_name in TYPES:
        plain, merged = folder / f"plain.{type_name}.gguf", folder / f"merged.{type_name}.gguf"
        requantize(source, plain, type_name)
        requantize(str(merged_f32), merged, type_name)
        configs[f"{type_name}, adapter at run time"] = (str(plain), adapter)
        configs[f"{type_name}, adapter merged"] = (str(merged), None)
    merged_f32.unlink()
    return configs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=8)
    parser.add_argument("--docs", type=Path)
    args = parser.parse_args()
    adapter = bundled_adapter_path()
    if adapter is None:
        sys.exit("this build ships no bundled adapter")
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        configs = build_copies(Path(tmp), adapter)
        rewriters = {name: Rewriter(model, adapter=adapter_path) for name, (model, adapter_path) in configs.items()}
        reference = next(iter(rewriters))
        for scenario in ("stream", "interleaved"):
            ms: dict[str, list[float]] = {name: [] for name in rewriters}
            out: dict[str, list[str]] = {name: [] for name in rewriters}
            for messages in requests(scenario, args.turns, args.repeat):
                for name, rw in rewriters.items():
                    res = rw.rewrite(messages)
                    ms[name].append(res.timings.total_ms)
                    out[name].append(res.rewrite)
            for name in rewriters:
                speedup = statistics.median(a / b for a, b in zip(ms[reference], ms[name], strict=True))
                same = sum(a == b for a, b in zip(out[reference], out[name], strict=True))
                row = (
                    scenario,
                    name,
                    statistics.median(ms[name]),
                    statistics.mean(ms[name]),
                    speedup,
                    same,
                    len(ms[name]),
                )
                lines.append("| {} | {} | {:.1f} | {:.1f} | {:.2f} | {}/{} |".format(*row))
                print(lines[-1], flush=True)
    features = " ".join(sorted(f for f in cpu_features() if f.startswith("AVX")))
    command = "python scripts/bench_run_copy.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report = (
        "# Run copies of the embedded model\n\n"
        f"Machine: {machine()}; llama.cpp uses {features}\n\n"
        f"The runtime's choice here: {run_type()}, adapter merged (out of the box).\n\n"
        f"Command: `{command}`\n\n"
        f"Each bench request goes to every configuration in turn (paired); speed-up is the median per-request ratio to "
        f"the first row; same rewrites: identical to the first row's.\n\n"
        "| scenario | configuration | p50 ms | mean ms | speed-up | same rewrites |\n|---|---|---|---|---|---|\n"
        + "\n".join(lines)
        + "\n"
    )
    if args.docs:
        write_text_atomic(args.docs, report)
    else:
        print(report)


if __name__ == "__main__":
    main()
