"""The only module that talks to llama.cpp: tokens in, tokens out, with the KV cache kept warm.

Prefix reuse has two layers:
- within the live context, a new prompt reuses the longest common token prefix with the last one;
- the stable prefix of each prompt kind (task + examples of the rewrite prompt, each gate task) is
  snapshotted once with ``save_state`` and restored with ``load_state`` when a call switches kind,
  so the gate prompts and the rewrite prompt never re-evaluate each other's long system part;
- the last call's full prompt state is snapshotted when another conversation takes the context over,
  so a conversation whose turns arrive between other conversations' turns resumes where it was.

GGUF LoRA adapters are loaded on the one base model (``llama_adapter_lora_init``) and switched per call
with ``llama_set_adapters_lora``; a KV state computed under one adapter is never reused under another
(the live context is dropped on a switch and saved states are kept per adapter). An adapter can also be
in the model's weights already (``add_merged_adapter``: the embedded default's run copy); the model then
runs under it only, and neither the bare base nor other adapters are on it.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .chat_template import ChatTemplate, template_source
from .decoding import Decoding
from .errors import AdapterError, ContextOverflowError, ModelLoadError, ModelNotFoundError
from .prompt import RenderedPrompt
from .result import Timings

if TYPE_CHECKING:  # pragma: no cover
    from llama_cpp import Llama


@dataclass(frozen=True)
class _Snapshot:
    tokens: np.ndarray
    data: ctypes.Array  # llama.cpp's serialized state, kept in the buffer it was written to (no copy)
    size: int


@dataclass(frozen=True)
class LoadedAdapter:
    """A GGUF LoRA loaded on the engine's model, with the metadata llama.cpp read from it."""

    name: str
    path: str
    handle: Any  # None for a merged adapter
    metadata: dict[str, str]
    merged: bool = False  # in the model's weights, not applied at run time


@dataclass(frozen=True)
class Generation:
    text: str
    timings: Timings
    tokens: tuple[int, ...] = ()  # the generated tokens, end-of-generation excluded
    #: The log-probability of each token before the stop tag, under greedy decoding (empty when sampled).
    logprobs: tuple[float, ...] = ()


def _common_prefix(a: Any, b: list[int]) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(diff[0]) if diff.size else n


def _gguf_type(path: str) -> str | None:
    """``general.type`` of a GGUF file ("model", "adapter"), None when it cannot be read: why a load failed."""
    try:
        from gguf import GGUFReader

        field = GGUFReader(path).get_field("general.type")
        return field.contents() if field is not None else None
    except Exception:  # not a GGUF at all: the caller's message stands
        return None


def cpu_features() -> set[str]:
    """The CPU features llama.cpp was built for and uses here (``AVX2``, ``AVX512_BF16``...)."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode("utf-8", errors="replace")
    return {
        name.strip()
        for part in info.split("|")
        if "=" in part
        for name, on in [part.rsplit("=", 1)]
        if on.strip() == "1"
    }


def requantize(source: str, target: str | os.PathLike[str], type_name: str) -> None:
    """Write ``source`` requantized to ``type_name`` (a ``LLAMA_FTYPE_MOSTLY_*`` name such as Q8_0) at ``target``,
    with llama.cpp's own quantizer; raises ``ModelLoadError`` when it fails."""
    import llama_cpp

    # llama-cpp-python routes llama.cpp's log through this logger; the quantizer logs a line per tensor
    log = logging.getLogger("llama-cpp-python")
    level = log.level
    log.setLevel(logging.ERROR)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{type_name}")
    params.allow_requantize = True
    params.nthread = os.cpu_count() or 1
    try:
        failed = llama_cpp.llama_model_quantize(os.fsencode(source), os.fsencode(target), ctypes.byref(params)) != 0
    finally:
        log.setLevel(level)
    if failed:
        raise ModelLoadError(f"llama.cpp could not requantize {source} to {type_name}")


class LlamaEngine(Decoding):
    """A loaded GGUF model with a bounded cache of saved prefix states. Thread-safe: one call at a time."""

    def __init__(
        self,
        model_path: str,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
        seed: int = 0,
        max_saved_prefixes: int = 4,
        max_recent_prompts: int = 8,
        max_cache_bytes: int | None = None,
        draft_tokens: int | None = None,
        verbose: bool = False,
    ) -> None:
        if not os.path.isfile(model_path):
            raise ModelNotFoundError(f"model file not found: {model_path}")
        import llama_cpp  # imported here: it loads the shared library and sets a log hook

        threads = n_threads or os.cpu_count() or 1
        try:
            self._llm: Llama = llama_cpp.Llama(
                model_path=model_path,
                n_ctx=n_ctx,
                n_threads=threads,
                n_threads_batch=threads,  # llama-cpp-python's default is every core: actors sharing a node would fight
                n_gpu_layers=n_gpu_layers,
                seed=seed,
                logits_all=False,
                verbose=verbose,
            )
        except (ValueError, RuntimeError) as exc:
            if _gguf_type(model_path) == "adapter":
                raise ModelLoadError(
                    f"{model_path} is a LoRA adapter, not a model: run it on its base model "
                    "(--model BASE.gguf --adapter FILE, or Rewriter(BASE, adapter=FILE))"
                ) from None
            raise ModelLoadError(f"llama.cpp could not load {model_path}: {exc}") from None
        self._llama_cpp = llama_cpp
        self.model_path = model_path
        self.metadata: dict[str, str] = dict(self._llm.metadata)
        # llama.cpp pads the context it allocates (100 -> 256), but llama-cpp-python's token buffer has the size
        # asked for: the smaller one is what fits (a prompt past it broke the buffer, not a typed error).
        self.n_ctx = min(self._llm.n_ctx(), len(self._llm.input_ids))
        self._lock = threading.RLock()
        # Saved states per adapter (None: the bare base): stable prefixes of each prompt kind, and the
        # recent full prompts, one per conversation.
        self._prefix_store: dict[str | None, OrderedDict[tuple[int, ...], _Snapshot]] = {}
        self._recent_store: dict[str | None, OrderedDict[tuple[int, ...], _Snapshot]] = {}
        self.adapters: dict[str, LoadedAdapter] = {}
        self._active: str | None = None
        self._max_prefixes = max_saved_prefixes
        self._max_recent = max_recent_prompts
        self._init_decoding(draft_tokens)
        #: The prompt of the last call, whose state is in the live context and not yet saved (see ``_save_live``).
        self._live_prompt: tuple[int, ...] | None = None
        #: Saved KV states are bounded in bytes too (on a 3B model one state is tens of MB): by default four
        #: full contexts' worth of KV cells, at least 64 MiB.
        self.max_cache_bytes = max_cache_bytes if max_cache_bytes is not None else max(64 << 20, 4 * self._kv_bytes())
        self._prefix_tokens: dict[str, list[int]] = {}
        vocab = self._llm._model
        bos_id = vocab.token_bos()
        self._bos_text = vocab.token_get_text(bos_id) if bos_id >= 0 else ""
        eos_id = vocab.token_eos()
        self.chat_template = ChatTemplate(
            template_source(self.metadata),
            bos_token=self._bos_text,
            eos_token=vocab.token_get_text(eos_id) if eos_id >= 0 else "",
            name=os.path.basename(model_path),
        )

    def warm(self, adapter: str | None = None) -> None:
        """Do the once-per-adapter work now (the split-invariance probe) rather than in the first call."""
        with self._lock:
            self._use(adapter)
            self._split_invariance()

    # -- adapters --------------------------------------------------------------------------------
    def load_adapter(self, name: str, path: str) -> LoadedAdapter:
        """Load a GGUF LoRA adapter on this model (not yet applied). Typed errors for every bad file."""
        if self.merged_adapter is not None:
            raise AdapterError(f"adapter {self.merged_adapter!r} is merged into this model: no other adapter joins it")
        if not os.path.isfile(path):
            raise AdapterError(f"adapter file not found: {path}")
        lc = self._llama_cpp
        with open(path, "rb") as f:
            if f.read(4) != b"GGUF":
                raise AdapterError(f"{path} is not a GGUF file")
        with self._lock:
            handle = lc.llama_adapter_lora_init(self._llm.model, path.encode("utf-8"))
            if not handle:
                raise AdapterError(
                    f"llama.cpp could not load {path} as a LoRA adapter for {self.name} "
                    "(not an adapter, corrupt, or made for another architecture or size)"
                )
            adapter = LoadedAdapter(name=name, path=path, handle=handle, metadata=self._adapter_metadata(handle))
            self.adapters[name] = adapter
        return adapter

    def add_merged_adapter(self, name: str, path: str) -> LoadedAdapter:
        """Register ``path`` as merged into this model's weights (its metadata read from the file, never applied
        at run time). The model then runs under it: calls for the bare base or another adapter are refused."""
        if self.adapters:
            raise AdapterError("a merged adapter cannot join adapters applied at run time on the same model")
        loaded = self.load_adapter(name, path)  # validates the file against the model and reads its metadata
        self._llama_cpp.llama_adapter_lora_free(loaded.handle)
        merged = self.adapters[name] = LoadedAdapter(name, path, None, loaded.metadata, merged=True)
        self._active = name
        return merged

    @property
    def merged_adapter(self) -> str | None:
        """The adapter in the model's weights, if any."""
        return next((a.name for a in self.adapters.values() if a.merged), None)

    def check_not_merged(self, adapter: str | None) -> None:
        """Raise ``AdapterError`` when ``adapter`` (None: the bare base) cannot run because another adapter is merged
        into the model's weights."""
        merged = self.merged_adapter
        if merged is not None and adapter != merged:
            wanted = "the bare base" if adapter is None else f"adapter {adapter!r}"
            raise AdapterError(
                f"adapter {merged!r} is merged into {os.path.basename(self.model_path)}, so {wanted} is not on this "
                "model; build a Rewriter with adapter=None (or adapters=...) to run it"
            )

    def _adapter_metadata(self, handle: Any) -> dict[str, str]:
        lc = self._llama_cpp
        buf = ctypes.create_string_buffer(1 << 16)  # a chat template or a confidence map is a few kB
        meta = {}
        for i in range(lc.llama_adapter_meta_count(handle)):
            if lc.llama_adapter_meta_key_by_index(handle, i, buf, len(buf)) < 0:
                continue
            key = buf.value.decode("utf-8", errors="replace")
            if lc.llama_adapter_meta_val_str_by_index(handle, i, buf, len(buf)) >= 0:
                meta[key] = buf.value.decode("utf-8", errors="replace")
        return meta

    def _use(self, adapter: str | None) -> None:
        """Apply ``adapter`` (None: no adapter) to the context; drop the live KV state when it changes."""
        if adapter == self._active:
            return
        if adapter is not None and adapter not in self.adapters:
            raise AdapterError(f"no adapter named {adapter!r} is loaded; loaded: {', '.join(self.adapters) or 'none'}")
        self.check_not_merged(adapter)
        self._save_live()  # into the outgoing adapter's store
        lc, llm = self._llama_cpp, self._llm
        if adapter is None:
            rc = lc.llama_set_adapters_lora(llm.ctx, None, 0, None)
        else:
            handles = (lc.llama_adapter_lora_p_ctypes * 1)(self.adapters[adapter].handle)
            scales = (ctypes.c_float * 1)(1.0)
            rc = lc.llama_set_adapters_lora(llm.ctx, handles, 1, scales)
        if rc != 0:
            raise AdapterError(f"llama.cpp could not apply adapter {adapter!r}")
        self._active = adapter
        llm.n_tokens = 0  # the KV cells were computed under the previous adapter

    @property
    def _prefixes(self) -> OrderedDict[tuple[int, ...], _Snapshot]:
        return self._prefix_store.setdefault(self._active, OrderedDict())

    @property
    def _recent(self) -> OrderedDict[tuple[int, ...], _Snapshot]:
        return self._recent_store.setdefault(self._active, OrderedDict())

    @property
    def name(self) -> str:
        return self.metadata.get("general.name") or os.path.basename(self.model_path)

    # -- tokens ----------------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        """Tokenize rendered template text: special tokens parsed; BOS added when wanted and missing."""
        add_bos = not (self._bos_text and text.startswith(self._bos_text))
        return self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def detokenize(self, tokens: list[int]) -> str:
        return self._llm.detokenize(tokens).decode("utf-8", errors="ignore")

    @functools.cached_property
    def max_token_chars(self) -> int:
        """The most characters one token stands for: a text over ``n`` times this is over ``n`` tokens, known
        without tokenizing it."""
        vocab = self._llm._model
        return max((len(vocab.token_get_text(i)) for i in range(self._llm.n_vocab())), default=1) or 1

    def token_ids(self, word: str) -> list[int]:
        return self._llm.tokenize(word.encode("utf-8"), add_bos=False, special=False)

    def _stable_len(self, prompt: RenderedPrompt, tokens: list[int]) -> int:
        if not prompt.stable_prefix:
            return 0
        prefix = self._prefix_tokens.get(prompt.stable_prefix)
        if prefix is None:
            prefix = self.tokenize(prompt.stable_prefix)
            if len(self._prefix_tokens) > 16:
                self._prefix_tokens.clear()
            self._prefix_tokens[prompt.stable_prefix] = prefix
        return min(_common_prefix(prefix, tokens), len(tokens) - 1)

    # -- KV cache --------------------------------------------------------------------------------
    def _snapshot(self) -> _Snapshot:
        """The context's state (KV cells in use, last logits) and its tokens; no copy of the Python-side scores."""
        llm, lc = self._llm, self._llama_cpp
        size = lc.llama_state_get_size(llm.ctx)
        buf = (ctypes.c_uint8 * size)()
        n = lc.llama_state_get_data(llm.ctx, buf, size)
        return _Snapshot(tokens=llm.input_ids[: llm.n_tokens].copy(), data=buf, size=n)

    def _restore(self, snap: _Snapshot) -> None:
        llm, lc = self._llm, self._llama_cpp
        if lc.llama_state_set_data(llm.ctx, snap.data, snap.size) != snap.size:
            raise RuntimeError("llama.cpp could not restore a saved state")
        llm.input_ids[: len(snap.tokens)] = snap.tokens
        llm.n_tokens = len(snap.tokens)
        llm._requires_eval = True  # logits are refreshed by the next eval

    def _kv_bytes(self) -> int:
        """Bytes of K and V for a full context (f16 cells): the unit a saved state's size is measured in."""
        model = self._llm.model
        lc = self._llama_cpp
        n_head = max(lc.llama_model_n_head(model), 1)
        head_dim = lc.llama_model_n_embd(model) // n_head
        n_head_kv = lc.llama_model_n_head_kv(model) or n_head
        return 2 * 2 * lc.llama_model_n_layer(model) * self.n_ctx * head_dim * n_head_kv

    @property
    def cache_bytes(self) -> int:
        """Bytes held by saved KV states, all adapters together."""
        stores = [*self._prefix_store.values(), *self._recent_store.values()]
        return sum(snap.size for store in stores for snap in store.values())

    def _remember(self, store: OrderedDict, key: tuple[int, ...], limit: int) -> None:
        store[key] = self._snapshot()
        store.move_to_end(key)
        while len(store) > limit:
            store.popitem(last=False)
        # Over the byte bound: drop the least recently used recent prompts first, then old stable prefixes;
        # the state just saved stays.
        held = self.cache_bytes
        for pool in (*self._recent_store.values(), *self._prefix_store.values()):
            while held > self.max_cache_bytes and pool and next(iter(pool)) != key:
                held -= pool.popitem(last=False)[1].size

    def _prepare(self, tokens: list[int], stable: int) -> int:
        """Bring the context to the longest cached prefix of ``tokens``; return how many tokens are reused.

        Candidates: the live context, the stable-prefix snapshots, and the snapshots of recent prompts
        (so a conversation whose turns arrive between other conversations' turns resumes where it was).
        """
        llm = self._llm
        reused = _common_prefix(llm.input_ids[: llm.n_tokens], tokens)
        if reused - stable < (llm.n_tokens - stable) / 4:
            # Most of the last prompt's own part is about to be overwritten: another conversation or prompt
            # kind takes the context over (a conversation's next turn keeps its whole history).
            self._save_live()
        best: tuple[OrderedDict, tuple[int, ...]] | None = None
        for store in (self._prefixes, self._recent):
            for key, snap in store.items():
                common = _common_prefix(snap.tokens, tokens)
                if common > reused:
                    best, reused = (store, key), common
        if best is not None:
            store, key = best
            self._restore(store[key])
            store.move_to_end(key)
        keep = self.pass_rows  # positions every pass evaluates at least (see ``pass_rows``)
        if stable >= keep:
            key = tuple(tokens[:stable])
            if key not in self._prefixes:
                # Evaluate up to the end of the stable prefix and snapshot it for the next switch.
                llm.n_tokens = min(reused, stable - keep)
                self._eval(tokens[llm.n_tokens : stable])
                self._remember(self._prefixes, key, self._max_prefixes)
            else:
                self._prefixes.move_to_end(key)
        return max(0, min(reused, len(tokens) - keep))

    def _save_live(self) -> None:
        """Snapshot the last call's prompt state before the context is given to another prompt, so its
        conversation's next turn resumes from it. Saved when leaving rather than after every call: a
        conversation whose next turn comes straight after pays nothing."""
        if self._live_prompt is not None:
            self._remember(self._recent, self._live_prompt, self._max_recent)
            self._live_prompt = None

    def _check_fits(self, n_prompt: int, max_tokens: int) -> None:
        if n_prompt + max_tokens > self.n_ctx:
            raise ContextOverflowError(
                f"prompt of {n_prompt} tokens plus {max_tokens} to generate exceeds the context of {self.n_ctx} tokens"
            )

    # -- calls -----------------------------------------------------------------------------------
    def generate(
        self,
        prompt: RenderedPrompt,
        max_tokens: int,
        temperature: float = 0.0,
        tokens: list[int] | None = None,
        adapter: str | None = None,
    ) -> Generation:
        """Greedy (or sampled) continuation of ``prompt`` up to its stop tag, end of generation or ``max_tokens``.

        ``tokens``: the prompt already tokenized by the caller (fitting it to the context did that).
        ``adapter``: the name of a loaded adapter to run under, or None for the bare base.
        """
        stop = prompt.stop
        with self._lock:
            self._use(adapter)
            start = time.perf_counter()
            tokens = tokens if tokens is not None else self.tokenize(prompt.text)
            self._check_fits(len(tokens), max_tokens)
            self._split_invariance()  # probed before the context is prepared: the probe uses it
            reused = self._prepare(tokens, self._stable_len(prompt, tokens))
            logprobs: list[float] = []
            if temperature > 0:
                out, passes, first_at = self._sample(tokens, max_tokens, temperature, stop)
            else:
                out, passes, first_at, logprobs = self._greedy(tokens, reused, max_tokens, stop, prompt.opening)
            self._live_prompt = tuple(tokens) if prompt.stable_prefix else None
            end = time.perf_counter()
            text = self.detokenize(out)
        first_at = first_at or end
        timings = Timings(
            prompt_tokens=len(tokens),
            prompt_tokens_reused=reused,
            prompt_tokens_evaluated=len(tokens) - reused,
            generated_tokens=len(out),
            forward_passes=passes,
            model_calls=1,
            prompt_ms=(first_at - start) * 1000,
            generation_ms=(end - first_at) * 1000,
        )
        return Generation(text=text.split(stop, 1)[0], timings=timings, tokens=tuple(out), logprobs=tuple(logprobs))

    def yes_probability(
        self, prompt: RenderedPrompt, adapter: str | None = None, tokens: list[int] | None = None
    ) -> tuple[float, Timings]:
        """P(yes) from the next-token logits of "yes" vs "no" (either casing): a one-token constrained answer."""
        with self._lock:
            self._use(adapter)
            start = time.perf_counter()
            tokens = tokens if tokens is not None else self.tokenize(prompt.text)
            self._check_fits(len(tokens), 1)
            self._split_invariance()
            reused = self._prepare(tokens, self._stable_len(prompt, tokens))
            self._llm.n_tokens = reused
            self._check_stop()
            logits = self._eval(tokens[reused:])[0].copy()
            self._live_prompt = tuple(tokens)
            end = time.perf_counter()
        yes = max(logits[t[0]] for t in (self.token_ids("yes"), self.token_ids("Yes")) if t)
        no = max(logits[t[0]] for t in (self.token_ids("no"), self.token_ids("No")) if t)
        p_yes = float(1.0 / (1.0 + np.exp(no - yes)))
        timings = Timings(
            prompt_tokens=len(tokens),
            prompt_tokens_reused=reused,
            prompt_tokens_evaluated=len(tokens) - reused,
            model_calls=1,
            prompt_ms=(end - start) * 1000,
        )
        return p_yes, timings

    def floor_ms(self, reused: int, evaluated: int, generated: int, adapter: str | None = None) -> float:
        """What llama.cpp alone needs for a turn of these token counts (bench's floor): ``evaluated`` new prompt
        tokens in one batch after ``reused`` cached ones, then one single-token decode per generated token after
        the first (the sequential floor: no drafting); no sampling,
        no detokenizing, no Python per token beyond the decode call. The live context is kept."""
        with self._lock:
            self._use(adapter)
            llm = self._llm
            live = self._snapshot()  # put back afterwards: the caller's next turn finds its context as it left it
            filler = (self.token_ids(" the") or [0])[:1]
            llm.n_tokens = 0
            llm._ctx.kv_cache_seq_rm(-1, 0, -1)
            if reused:
                self._eval(filler * reused)
            start = time.perf_counter()
            self._eval(filler * max(evaluated, 1))
            for _ in range(generated - 1):  # the prompt's pass gives the first token
                self._decode(filler)
            elapsed = (time.perf_counter() - start) * 1000
            llm.n_tokens = 0
            llm._ctx.kv_cache_seq_rm(-1, 0, -1)
            self._restore(live)
            return elapsed

    def chat_reply(self, messages: list[dict[str, str]], max_tokens: int = 96, temperature: float = 0.7) -> str:
        """A plain chat answer in the model's template (for trying a conversation out): from the bare base, or
        where an adapter is merged into the weights, from the model as loaded."""
        turn_end = "<end_of_turn>" if "<end_of_turn>" in self.chat_template.source else "<|im_end|>"  # Gemma, ChatML
        prompt = RenderedPrompt(text=self.chat_template.render(messages), stable_prefix="", stop=turn_end)
        return self.generate(prompt, max_tokens, temperature, adapter=self.merged_adapter).text.strip()
