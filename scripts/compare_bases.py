"""Two embedded bases side by side, out of the box (``Rewriter(model=NAME)``: its bundled adapter, merged).

One command per base measures everything on this machine and writes a JSON; a second command puts the JSONs
side by side as the model card's markdown table.

    python scripts/compare_bases.py measure --model smollm2-135m --out build/bases/smollm2-135m.json
    python scripts/compare_bases.py measure --model gemma3-270m --out build/bases/gemma3-270m.json
    python scripts/compare_bases.py table build/bases/smollm2-135m.json build/bases/gemma3-270m.json

``measure``: first use in an empty cache (joining, run copy, merge: seconds and bytes), the wheel files each
base brings, prompt tokens per dev conversation in Chinese and English, ``qr-edge eval`` on the dev splits
(first ``--limit`` per file, with the never-rewrite baseline), and ``qr-edge bench`` (stream, against the floor).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QR = str(Path(sys.executable).with_name("qr-edge"))
METRICS = [("bleu4", "BLEU"), ("exact_match", "EM"), ("unchanged_accuracy", "kept"), ("unsupported_rate", "unsup")]


def _package_bytes(module: str) -> int:
    """Bytes a model's packages install (for chunked models: the chunk packages too)."""
    import importlib.util

    total = 0
    names = [module] + [f"{module}_part{i}" for i in range(1, 9)]
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        for root, _, files in os.walk(list(spec.submodule_search_locations)[0]):
            total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def _first_use(name: str) -> dict:
    """Build the Rewriter in an empty cache in a child process: seconds to the first rewrite and cache bytes."""
    with tempfile.TemporaryDirectory() as cache:
        code = (
            "import time; t=time.perf_counter(); from qr_edge import Rewriter; "
            f"rw=Rewriter(model={name!r}, n_ctx=2048); rw.rewrite([{{'role':'user','content':'hi'}}]); "
            "print(time.perf_counter()-t)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], env={**os.environ, "QR_EDGE_CACHE": cache}, capture_output=True, text=True
        )
        if out.returncode:
            raise SystemExit(f"first use of {name} failed:\n{out.stderr[-2000:]}")
        size = sum(f.stat().st_size for f in Path(cache).iterdir())
        return {"first_use_s": round(float(out.stdout.strip().splitlines()[-1]), 1), "cache_bytes": size}


def _prompt_tokens(name: str, files: list[Path], limit: int) -> dict:
    """Mean rewrite-prompt tokens per dev conversation, Chinese and English apart."""
    from qr_edge import Rewriter
    from qr_edge.data.dataset import read_dataset

    rw = Rewriter(model=name, n_ctx=4096)
    per_lang: dict[str, list[int]] = {}
    for path in files:
        for rec in read_dataset(path)[:limit]:
            text = rw.render_prompt([m.model_dump() for m in rec.messages])
            per_lang.setdefault("zh" if rec.lang == "zh" else "en", []).append(len(rw.engine.tokenize(text)))
    return {f"prompt_tokens_{lang}": round(statistics.mean(v), 1) for lang, v in sorted(per_lang.items())}


def measure(args: argparse.Namespace) -> None:
    from qr_edge.evaluate.bench import machine
    from qr_edge.model_source import EMBEDDED_MODELS, bundled_adapter_path

    model = EMBEDDED_MODELS[args.model]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    files = sorted((ROOT / args.mix).glob("dev-*.jsonl"))
    adapter = bundled_adapter_path(model)
    if adapter is None:
        raise SystemExit(f"{model.name} has no bundled adapter in qr_edge/assets ({model.adapter})")
    result: dict = {
        "model": model.name,
        "licence": model.licence,
        "machine": machine(),
        "adapter": model.adapter,
        "adapter_bytes": os.path.getsize(adapter),
        "package_bytes": _package_bytes(model.package),
    }
    result.update(_first_use(model.name))
    result.update(_prompt_tokens(model.name, files, args.limit))
    with tempfile.TemporaryDirectory() as tmp:
        evals = Path(tmp) / "eval.json"
        cases = Path(args.out).with_suffix(".cases.jsonl")  # kept: what a confidence map is fitted on
        cmd = [QR, "eval", "--model", model.name, "--baselines", "--limit", str(args.limit), "--out", str(evals)]
        cmd += ["--cases", str(cases), "--passages"]
        cmd += [arg for f in files for arg in ("--data", str(f))]
        started = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        result["eval_s"] = round(time.perf_counter() - started, 1)
        report = json.loads(evals.read_text())
        result["eval"], result["retrieval"], result["calibration"] = (
            report["rows"],
            report["retrieval"],
            report["calibration"],
        )
        bench = Path(tmp) / "bench.json"
        cmd = [QR, "bench", "--model", model.name, "--system", "qr-edge", "--scenario", "stream"]
        cmd += ["--turns", "4", "--repeat", "8", "--out", str(bench)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        result["bench"] = json.loads(bench.read_text())
    out = Path(args.out)
    tmp_out = out.with_name(out.name + ".tmp")
    tmp_out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    os.replace(tmp_out, out)
    print(f"wrote {out}")


def _row(result: dict, system: str, slice_: str) -> dict | None:
    return next((r for r in result["eval"] if r["system"] == system and r["slice"] == slice_), None)


def table(args: argparse.Namespace) -> None:
    results = [json.loads(Path(p).read_text()) for p in args.results]
    names = [r["model"] for r in results]
    slices = [r["slice"] for r in results[0]["eval"] if r["system"] == "qr-edge"]
    lines = ["| slice | n | " + " | ".join(f"{h} {n}" for _, h in METRICS for n in names) + " | BLEU unchanged |"]
    lines.append("|---|---|" + "---|" * (len(METRICS) * len(names) + 1))
    for slice_ in slices:
        cells = []
        for key, _ in METRICS:
            for res in results:
                row = _row(res, "qr-edge", slice_)
                value = None if row is None else row.get(key)
                cells.append("-" if value is None else f"{100 * value:.1f}")
        base = _row(results[0], "never-rewrite", slice_)
        n = _row(results[0], "qr-edge", slice_)["n"]
        bleu0 = "-" if base is None or base.get("bleu4") is None else f"{100 * base['bleu4']:.1f}"
        lines.append(f"| {slice_} | {n} | " + " | ".join(cells) + f" | {bleu0} |")
    lines += ["", "| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]

    def bench(res: dict, key: str):
        return next((r.get(key) for r in res["bench"] if r["system"] == "qr-edge"), None)

    def retrieval(res: dict, system: str, key: str):
        return next((r[key] for r in res.get("retrieval", []) if r["system"] == system and r["slice"] == "all"), None)

    def calibration(res: dict, key: str):
        return next((r[key] for r in res.get("calibration", []) if r["slice"] == "all"), None)

    facts = [
        ("licence", lambda r: r["licence"]),
        (
            "search dev MRR@10: raw query / rewrite / queries fused",
            lambda r: " / ".join(
                str(retrieval(r, s, "mrr_at_10")) for s in ("raw query", "rewrite", "queries (fused)")
            ),
        ),
        (
            "search dev recall@1: raw query / rewrite / queries fused",
            lambda r: " / ".join(
                str(retrieval(r, s, "recall_at_1")) for s in ("raw query", "rewrite", "queries (fused)")
            ),
        ),
        (
            "confidence as shipped (its map fitted on dev) AUROC / ECE, all dev",
            lambda r: f"{calibration(r, 'auroc')} / {calibration(r, 'ece')}",
        ),
        ("prompt tokens per dev conversation, Chinese", lambda r: r.get("prompt_tokens_zh")),
        ("prompt tokens per dev conversation, English", lambda r: r.get("prompt_tokens_en")),
        ("bench stream p50 ms", lambda r: bench(r, "p50_ms")),
        ("bench efficiency (floor / actual)", lambda r: bench(r, "efficiency")),
        ("bench tokens per pass", lambda r: bench(r, "tokens_per_pass")),
        ("bench new prompt tokens per turn", lambda r: bench(r, "mean_prompt_tokens_evaluated")),
        ("model packages installed, MB", lambda r: round(r["package_bytes"] / 2**20, 1)),
        ("bundled adapter, MB", lambda r: round(r["adapter_bytes"] / 2**20, 1)),
        ("cache after first use, MB", lambda r: round(r["cache_bytes"] / 2**20, 1)),
        ("first use (empty cache) to first rewrite, s", lambda r: r["first_use_s"]),
        ("dev eval wall time, s", lambda r: r["eval_s"]),
    ]
    for label, get in facts:
        lines.append(f"| {label} | " + " | ".join(str(get(r)) for r in results) + " |")
    lines += ["", f"Machine: {results[0]['machine']}"]
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help="measure one embedded base out of the box")
    m.add_argument("--model", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--mix", default="build/mix")
    m.add_argument("--limit", type=int, default=30)
    t = sub.add_parser("table", help="the markdown table of several measure JSONs")
    t.add_argument("results", nargs="+")
    args = parser.parse_args()
    (measure if args.command == "measure" else table)(args)


if __name__ == "__main__":
    main()
