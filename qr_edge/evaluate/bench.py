"""``qr-edge bench``: rewrite latency on this machine, qr-edge against the alternatives, same model, same run.

Systems, each measured in its own child process (so load time and peak RSS are its own):
- ``qr-edge``: the Rewriter (XML prompt, saved prefix states, bounded output, guard);
- ``peer``: the condense-question prompt frameworks use, through ``Llama.create_chat_completion``
  with default settings (``max_tokens=256``, LangChain's default for llama.cpp models);
- ``transformers``: the same GGUF loaded by transformers (fp32, CPU) generating qr-edge's prompt
  greedily (needs the ``convert`` extra; skipped with a note otherwise).

Scenarios: ``stream`` (each new user turn of one conversation rewritten as it arrives) and
``interleaved`` (three conversations whose turns arrive in turn).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import random
import resource
import statistics
import time
from pathlib import Path
from queue import Empty
from typing import Any

from pydantic import BaseModel

from ..adapters import adapter_choice
from ..data.synthetic import Entity, capitalise, load_pools
from ..model_source import resolve_model

PEER_PROMPT = (
    "Given the following conversation and a follow up question, "
    "rephrase the follow up question to be a standalone question, "
    "in its original language.\n\nChat History:\n{history}\nFollow Up Input: {question}\nStandalone question:"
)
PEER_MAX_TOKENS = 256


class BenchRow(BaseModel):
    system: str
    scenario: str
    rewrites: int
    p50_ms: float
    p95_ms: float
    mean_ms: float = 0.0
    mean_prompt_tokens_evaluated: float | None = None
    mean_prompt_tokens_reused: float | None = None
    #: tokens of the conversation text that arrived since the conversation's last rewrite (the new assistant
    #: and user turns, as the prompt shows them): evaluated minus this is what the prompt format wraps around it
    mean_new_turn_tokens: float | None = None
    #: mean over follow-up turns (a request that extends one of its conversation's earlier requests) of tokens
    #: evaluated minus the new turns' own: what the prompt format wraps around a follow-up (the corpus issue's
    #: bound is 16)
    follow_up_wrapping: float | None = None
    generated_tokens_per_s: float | None = None
    load_s: float
    peak_rss_mb: float
    floor_ms: float | None = None  # p50 of what llama.cpp alone needs for each turn's token counts
    efficiency: float | None = None  # median over turns of floor / actual (>= 1.0: at or below the floor)
    tokens_per_pass: float | None = None  # generated tokens per forward pass, the prompt's included (1.0 undrafted)
    model_file: str = (
        ""  # the GGUF file the system ran (qr-edge out of the box: the run copy with the adapter merged in)
    )
    note: str = ""

    @property
    def failed(self) -> bool:
        return self.note.startswith("failed")


def conversations(n: int, turns: int, seed: int = 0, lang: str = "en") -> list[list[dict[str, str]]]:
    """``n`` conversations of ``turns`` user turns about one entity, follow-ups by pronoun (the generator's pools)."""
    rng = random.Random(seed)
    pools = load_pools()[lang]["topics"]
    out = []
    for _ in range(n):
        topic = pools[rng.choice(sorted(pools))]
        e = Entity(rng.choice(topic["train"]), lang)
        questions = [q[1] for q in rng.sample(topic["questions"], min(len(topic["questions"]), turns - 1))]
        while len(questions) < turns - 1:
            questions.append(rng.choice(topic["questions"])[1])
        msgs = [{"role": "user", "content": capitalise(e.fill(rng.choice(topic["intros"])))}]
        for q in questions:
            msgs.append({"role": "assistant", "content": capitalise(e.fill(rng.choice(topic["answers"])))})
            msgs.append({"role": "user", "content": capitalise(e.fill(q))})
        out.append(msgs)
    return out


def requests(scenario: str, turns: int, repeat: int) -> list[list[dict[str, str]]]:
    """The message lists, in arrival order, that each system is asked to rewrite (turn 2 onwards)."""
    if scenario == "stream":
        convs = conversations(repeat, turns, seed=1)
        return [c[: 2 * k + 1] for c in convs for k in range(1, turns)]
    if scenario == "interleaved":
        convs = conversations(3 * repeat, turns, seed=2)
        out = []
        for group in range(repeat):
            trio = convs[3 * group : 3 * group + 3]
            out += [c[: 2 * k + 1] for k in range(1, turns) for c in trio]
        return out
    raise ValueError(f"unknown scenario {scenario!r}")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _row(
    system: str,
    scenario: str,
    ms: list[float],
    load_s: float,
    evaluated=None,
    reused=None,
    generated=None,
    gen_s=None,
    note="",
) -> BenchRow:
    return BenchRow(
        system=system,
        scenario=scenario,
        rewrites=len(ms),
        p50_ms=round(statistics.median(ms), 1),
        p95_ms=round(_percentile(ms, 0.95), 1),
        mean_ms=round(statistics.mean(ms), 1),
        mean_prompt_tokens_evaluated=round(statistics.mean(evaluated), 1) if evaluated else None,
        mean_prompt_tokens_reused=round(statistics.mean(reused), 1) if reused else None,
        generated_tokens_per_s=round(sum(generated) / gen_s, 1) if generated and gen_s else None,
        load_s=round(load_s, 2),
        peak_rss_mb=peak_rss_mb(),
        note=note,
    )


def _adapter_note(rw: Any) -> str:
    if rw.default_adapter is None:
        return f"no adapter, {os.path.basename(rw.model_path)}"
    loaded = rw.engine.adapters[rw.default_adapter]
    how = "merged into" if loaded.merged else "applied at run time on"
    return f"adapter {os.path.basename(loaded.path)} {how} {os.path.basename(rw.model_path)}"


def _bench_qr_edge(
    model: str | None, scenarios: list[str], turns: int, repeat: int, opts: dict[str, Any]
) -> list[BenchRow]:
    from ..rewriter import Rewriter

    start = time.perf_counter()
    rw = Rewriter(
        model,
        adapter=adapter_choice(opts.get("adapter")),
        n_examples=opts.get("n_examples"),
        n_threads=opts.get("threads"),
        n_gpu_layers=opts.get("gpu_layers", 0),
    )
    load_s = time.perf_counter() - start
    rows = []
    for scenario in scenarios:
        ms, ev, re_, gen, gen_s, passes, floors, turn_tokens = [], [], [], [], 0.0, 0, [], []
        wrapping: list[int] = []
        seen: list[list[dict[str, str]]] = []
        for messages in requests(scenario, turns, repeat):
            own, follow_up = _new_turn_tokens(rw, messages, seen)
            turn_tokens.append(own)
            seen.append(messages)
            t = rw.rewrite(messages).timings
            if follow_up:
                wrapping.append(t.prompt_tokens_evaluated - own)
            ms.append(t.total_ms)
            ev.append(t.prompt_tokens_evaluated)
            re_.append(t.prompt_tokens_reused)
            gen.append(t.generated_tokens)
            gen_s += t.generation_ms / 1000
            passes += t.forward_passes
            # the turn's floor right after it: on a shared machine whose speed drifts, a pair measured
            # seconds apart compares the code, not the moment (the live context is put back afterwards)
            floors.append(
                rw.engine.floor_ms(
                    t.prompt_tokens_reused, t.prompt_tokens_evaluated, t.generated_tokens, rw.default_adapter
                )
            )
        eng = rw.engine
        decoding = (
            f"drafts of {eng.draft_length} verified in passes of >= {eng.pass_rows}"
            if eng.drafting
            else "one token per pass"
        )
        note = f"{_adapter_note(rw)}, {len(rw.examples)} few-shot examples, {decoding}"
        row = _row("qr-edge", scenario, ms, load_s, ev, re_, gen, gen_s, note=note)
        row.model_file = os.path.basename(rw.model_path)
        row.floor_ms = round(statistics.median(floors), 1)
        row.efficiency = round(statistics.median(f / m for f, m in zip(floors, ms, strict=True)), 2)
        row.tokens_per_pass = round(sum(gen) / passes, 2) if passes else None
        row.mean_new_turn_tokens = round(statistics.mean(turn_tokens), 1)
        row.follow_up_wrapping = round(statistics.mean(wrapping), 1) if wrapping else None
        floor = _row("floor", scenario, floors, load_s, ev, re_, note="llama.cpp alone for qr-edge's token counts")
        rows += [row, floor]
    return rows


def _new_turn_tokens(rw: Any, messages: list[dict[str, str]], seen: list[list[dict[str, str]]]) -> tuple[int, bool]:
    """Tokens of the turns not in the conversation's previous request, as the prompt shows them (clipped, escaped),
    and whether there was such a request (a follow-up)."""
    from ..messages import Message

    previous = max((len(p) for p in seen if p == messages[: len(p)]), default=0)
    history, query = rw.builder.split([Message(**m) for m in messages])
    shown = [m.content for m in history[previous:]] + [query]
    return sum(len(rw.engine.token_ids(rw.builder.turn_text(text))) for text in shown), previous > 0


def _history_text(messages: list[dict[str, str]]) -> str:
    return "\n".join(f"{'Human' if m['role'] == 'user' else 'Assistant'}: {m['content']}" for m in messages[:-1])


def _bench_peer(
    model: str | None, scenarios: list[str], turns: int, repeat: int, opts: dict[str, Any]
) -> list[BenchRow]:
    import llama_cpp

    model = resolve_model(model)  # the bare base (for the embedded default, its run copy without the adapter)
    start = time.perf_counter()
    llm = llama_cpp.Llama(
        model_path=model,
        n_ctx=4096,
        n_threads=opts.get("threads") or os.cpu_count(),
        n_gpu_layers=opts.get("gpu_layers", 0),
        verbose=False,
    )
    load_s = time.perf_counter() - start
    rows = []
    for scenario in scenarios:
        ms, ev, gen = [], [], []
        for messages in requests(scenario, turns, repeat):
            prompt = PEER_PROMPT.format(history=_history_text(messages), question=messages[-1]["content"])
            t0 = time.perf_counter()
            out = llm.create_chat_completion(messages=[{"role": "user", "content": prompt}], max_tokens=PEER_MAX_TOKENS)
            ms.append((time.perf_counter() - t0) * 1000)
            ev.append(out["usage"]["prompt_tokens"])
            gen.append(out["usage"]["completion_tokens"])
        rows.append(
            _row(
                "peer",
                scenario,
                ms,
                load_s,
                ev,
                None,
                None,
                None,
                note=f"condense-question prompt, mean {statistics.mean(gen):.0f} tokens out",
            )
        )
    return rows


def _bench_transformers(
    model: str | None, scenarios: list[str], turns: int, repeat: int, opts: dict[str, Any]
) -> list[BenchRow]:
    try:
        import torch
        from transformers import AutoModelForCausalLM, StoppingCriteria
        from transformers.utils import logging as hf_logging
    except ImportError:
        return [
            BenchRow(
                system="transformers",
                scenario=s,
                rewrites=0,
                p50_ms=0,
                p95_ms=0,
                load_s=0,
                peak_rss_mb=0,
                note="skipped: install qr-edge[convert]",
            )
            for s in scenarios
        ]
    from ..rewriter import Rewriter

    # for the prompt and the tokenizer only; transformers runs the bare base, so the prompt is the bare base's
    model = resolve_model(model)
    rw = Rewriter(model, adapter=None, n_examples=opts.get("n_examples"), n_ctx=4096)

    class StopAtClosingTag(StoppingCriteria):
        def __init__(self, prompt_len: int) -> None:
            self.prompt_len = prompt_len

        def __call__(self, input_ids, scores, **kwargs) -> bool:
            tail = input_ids[0, self.prompt_len :].tolist()
            return "</rewritten_query>" in rw.engine.detokenize(tail)

    torch.set_num_threads(opts.get("threads") or os.cpu_count() or 1)
    hf_logging.disable_progress_bar()
    start = time.perf_counter()
    hf = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(os.path.abspath(model)), gguf_file=os.path.basename(model), dtype=torch.float32
    ).eval()
    load_s = time.perf_counter() - start
    rows = []
    for scenario in scenarios:
        ms, ev, gen, gen_s = [], [], [], 0.0
        for messages in requests(scenario, turns, repeat)[: max(3, repeat)]:
            _, _, tokens, limit = rw.fit_prompt(messages)
            ids = torch.tensor([tokens])
            t0 = time.perf_counter()
            with torch.no_grad():
                out = hf.generate(
                    ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=limit,
                    do_sample=False,
                    stopping_criteria=[StopAtClosingTag(ids.shape[1])],
                )
            elapsed = time.perf_counter() - t0
            ms.append(elapsed * 1000)
            ev.append(ids.shape[1])
            gen.append(out.shape[1] - ids.shape[1])
            gen_s += elapsed
        rows.append(
            _row(
                "transformers",
                scenario,
                ms,
                load_s,
                ev,
                None,
                gen,
                None,
                note="fp32 CPU, qr-edge's prompt, no KV reuse across calls",
            )
        )
    return rows


SYSTEMS = {"qr-edge": _bench_qr_edge, "peer": _bench_peer, "transformers": _bench_transformers}


def _child(
    system: str, model: str | None, scenarios: list[str], turns: int, repeat: int, opts: dict[str, Any], queue: Any
) -> None:
    try:
        queue.put([r.model_dump() for r in SYSTEMS[system](model, scenarios, turns, repeat, opts)])
    except Exception as exc:  # reported as a row note, so one failing system does not hide the others
        queue.put([_failed_row(system, s, f"{type(exc).__name__}: {exc}").model_dump() for s in scenarios])


def _failed_row(system: str, scenario: str, why: str) -> BenchRow:
    return BenchRow(
        system=system, scenario=scenario, rewrites=0, p50_ms=0, p95_ms=0, load_s=0, peak_rss_mb=0, note=f"failed: {why}"
    )


def run_bench(
    model: str | None, systems: list[str], scenarios: list[str], turns: int, repeat: int, opts: dict[str, Any]
) -> list[BenchRow]:
    ctx = mp.get_context("spawn")
    rows: list[BenchRow] = []
    for system in systems:
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(system, model, scenarios, turns, repeat, opts, queue))
        proc.start()
        result = None
        while result is None:
            try:
                result = queue.get(timeout=5)
            except Empty:
                if not proc.is_alive():  # died without a word (a crash in native code)
                    result = [_failed_row(system, s, f"exit code {proc.exitcode}").model_dump() for s in scenarios]
        proc.join()
        rows += [BenchRow(**r) for r in result]
    return rows


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux): llama.cpp and torch speeds differ 3-6x between AVX2 and AVX-512."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


def peak_rss_mb() -> float:
    """This process's peak resident set since it started its program, in MB. Linux's ``VmHWM`` (the high-water mark
    of this program's own memory map); ``ru_maxrss`` also keeps the RSS of the process it was forked from before
    the ``exec``, so a convert started by a script that held a 6 GB model would report those 6 GB as its own."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    system = f"{platform.system()} {platform.machine()}, Python {platform.python_version()}"
    simd = " ".join(sorted(f for f in cpu_flags() if f.startswith(("avx2", "avx512f", "avx512_bf16", "amx"))))
    return f"{os.cpu_count()} cores, {cpu} ({simd or 'no AVX2'}), {mem:.0f} GiB RAM, {system}"
