"""An HF safetensors base merged and exported one decoder layer at a time, so a 3B model converts on a 16 GB laptop.

The model is built on the meta device with its adapter attached (peft loads the adapter's small weights for
real); each decoder layer gets its float32 weights from the shards only while it is needed: read, (merged by
peft, DoRA magnitudes included), written to the GGUF files, freed. The verification's logits come from the same
layer-by-layer walk through the model's own forward (hooks on each layer), so no full float32 copy is ever held:
the peak is one layer, the embedding and the probes' activations.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConvertError

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"


def has_shards(folder: str | Path) -> bool:
    """Whether ``folder`` holds its weights as safetensors (one file or an index of shards)."""
    folder = Path(folder)
    return (folder / INDEX_FILE).is_file() or (folder / SINGLE_FILE).is_file()


class ShardReader:
    """Tensor by tensor from safetensors shards; a shard is opened only for the tensors asked of it at once, so
    its mapping (and its pages in the resident set) is released as soon as they are read."""

    def __init__(self, folder: Path) -> None:
        index = folder / INDEX_FILE
        if index.is_file():
            weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
        else:
            from safetensors import safe_open

            with safe_open(str(folder / SINGLE_FILE), framework="pt") as f:
                weight_map = dict.fromkeys(f.keys(), SINGLE_FILE)
        self.folder = folder
        self.where = weight_map

    def read(self, names: Sequence[str]) -> dict[str, Any]:
        """The named tensors as float32 torch tensors (a merge loses nothing)."""
        import torch
        from safetensors import safe_open

        missing = [n for n in names if n not in self.where]
        if missing:
            raise ConvertError(f"{self.folder} has no tensor {missing[0]}")
        out = {}
        for shard in sorted({self.where[n] for n in names}):
            with safe_open(str(self.folder / shard), framework="pt") as f:
                for name in names:
                    if self.where[name] == shard:
                        out[name] = f.get_tensor(name).to(torch.float32)
        return out


def _shard_name(param: str) -> str:
    """A parameter of the (peft-injected) model -> its name in the shards."""
    return param.replace(".base_layer.", ".")


class LayerwiseModel:
    """The base (and its adapter) as a model on the meta device whose decoder layers are filled in one at a time."""

    def __init__(self, folder: str | Path, adapter: str | None) -> None:
        import torch
        from accelerate import init_empty_weights
        from transformers import AutoConfig, AutoModelForCausalLM

        self.folder = Path(folder)
        self.shards = ShardReader(self.folder)
        self.config = AutoConfig.from_pretrained(self.folder)
        with init_empty_weights(include_buffers=False):  # rotary tables stay real: they are computed, not stored
            model = AutoModelForCausalLM.from_config(self.config, dtype=torch.float32)
        model.eval()
        self.peft = None
        if adapter is not None:
            from accelerate.utils import set_module_tensor_to_device
            from peft import PeftModel
            from peft.utils import load_peft_weights, set_peft_model_state_dict

            # peft puts an adapter's weights where its base layer is (meta here): give them memory, then load them
            self.peft = PeftModel.from_pretrained(model, adapter, low_cpu_mem_usage=True)
            for name, param in list(self.peft.named_parameters()):
                if "lora_" in name:
                    set_module_tensor_to_device(self.peft, name, "cpu", value=torch.zeros(param.shape))
            loaded = set_peft_model_state_dict(self.peft, load_peft_weights(adapter, device="cpu"))
            if loaded.unexpected_keys:
                raise ConvertError(f"adapter {adapter} has weights the model lacks: {loaded.unexpected_keys[:3]}")
            self.peft.eval()
            model = self.peft.get_base_model()
        self.model = model
        tied = bool(getattr(self.config, "tie_word_embeddings", False))
        self.layers = model.get_decoder().layers
        prefix = {id(p): name for name, p in model.named_parameters(remove_duplicate=False)}
        self._layer_params = [
            [prefix[id(p)] for name, p in layer.named_parameters() if "lora_" not in name] for layer in self.layers
        ]
        in_layers = {n for names in self._layer_params for n in names}
        outer = [
            n
            for n, _ in model.named_parameters()
            if n not in in_layers and "lora_" not in n and not (tied and n == "lm_head.weight")
        ]
        # written before the layers (the embedding) and after them (the final norm, an untied output), as the
        # model's own state dict orders them
        self._tail = [n for n in outer if n == "model.norm.weight" or n.startswith("lm_head")]
        self._head = [n for n in outer if n not in self._tail]
        self._shapes = {n: tuple(p.shape) for n, p in model.named_parameters(remove_duplicate=False)}
        self._fill(outer)
        if tied:
            model.get_output_embeddings().weight = model.get_input_embeddings().weight

    def plan(self) -> list[tuple[str, tuple[int, ...]]]:
        """(name in the shards, shape) of every tensor of the merged model, in the order ``tensors`` yields them."""
        names = self._head + [n for names in self._layer_params for n in names] + self._tail
        return [(_shard_name(n), self._shapes[n]) for n in names]

    def _fill(self, names: Sequence[str]) -> None:
        from accelerate.utils import set_module_tensor_to_device

        values = self.shards.read([_shard_name(n) for n in names])
        for name in names:
            set_module_tensor_to_device(self.model, name, "cpu", value=values[_shard_name(name)])

    def _empty(self, names: Sequence[str]) -> None:
        from accelerate.utils import set_module_tensor_to_device

        for name in names:
            set_module_tensor_to_device(self.model, name, "meta")

    def _outer_tensors(self, names: Sequence[str]) -> Iterator[tuple[str, np.ndarray]]:
        params = dict(self.model.named_parameters())
        for name in names:
            yield name, params[name].detach().numpy()

    @contextmanager
    def _layer(self, i: int, merge: bool) -> Iterator[list[tuple[str, np.ndarray]]]:
        """Layer ``i`` filled in (and with ``merge`` its adapter merged into it) while the block runs."""
        names = self._layer_params[i]
        self._fill(names)
        try:
            if merge and self.peft is not None:
                from peft.tuners.lora import LoraLayer

                for module in self.layers[i].modules():
                    if isinstance(module, LoraLayer):
                        module.merge(safe_merge=True)  # peft's own merge: DoRA magnitudes included
            params = dict(self.model.named_parameters())
            yield [(_shard_name(n), params[n].detach().numpy()) for n in names]
        finally:
            self._empty(names)

    def tensors(self) -> Iterator[tuple[str, np.ndarray]]:
        """The merged model's tensors in ``plan`` order, one layer in memory at a time (no forward pass)."""
        yield from self._outer_tensors(self._head)
        for i in range(len(self.layers)):
            with self._layer(i, merge=True) as layer:
                yield from layer
        yield from self._outer_tensors(self._tail)

    def logits(
        self,
        ids: Sequence[Sequence[int]],
        merged: bool,
        on_tensor: Callable[[str, np.ndarray], None] | None = None,
    ) -> list[np.ndarray]:
        """Logits at every position of each sequence, the layers filled in as the forward reaches them; with
        ``merged`` the adapter is merged into each layer first (else peft applies it), and ``on_tensor`` gets
        every merged tensor in ``plan`` order as the walk passes it."""
        import torch

        width = max(len(s) for s in ids)
        pad = 0
        input_ids = torch.tensor([list(s) + [pad] * (width - len(s)) for s in ids], dtype=torch.long)
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in ids], dtype=torch.long)
        emit = on_tensor or (lambda name, value: None)
        for name, value in self._outer_tensors(self._head):
            emit(name, value)
        opened: dict[int, Any] = {}

        def before(module: Any, args: Any) -> None:
            i = index[id(module)]
            opened[i] = self._layer(i, merge=merged)
            for name, value in opened[i].__enter__():
                emit(name, value)

        def after(module: Any, args: Any, output: Any) -> None:
            opened.pop(index[id(module)]).__exit__(None, None, None)

        index = {id(layer): i for i, layer in enumerate(self.layers)}
        hooks = [layer.register_forward_pre_hook(before) for layer in self.layers]
        hooks += [layer.register_forward_hook(after) for layer in self.layers]
        try:
            with torch.no_grad():
                out = self.model(input_ids=input_ids, attention_mask=mask, use_cache=False).logits
        finally:
            for h in hooks:
                h.remove()
            for ctx in opened.values():
                ctx.__exit__(None, None, None)
        for name, value in self._outer_tensors(self._tail):
            emit(name, value)
        return [out[b, : len(s)].float().numpy().copy() for b, s in enumerate(ids)]
