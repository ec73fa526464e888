"""`Rewriter()` out of the box: the embedded SmolLM2-135M with the bundled LoRA adapter, 0-shot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from qr_edge import Decision, Rewriter
from qr_edge.data.synthetic import RewriteGenerator
from qr_edge.errors import AdapterError
from qr_edge.model_meta import COMPACT_PROMPT_FORMAT
from qr_edge.model_source import BUNDLED_ADAPTER, bundled_adapter_path, embedded_model_path

from ..conftest import CONVERSATION

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def default() -> Rewriter:
    return Rewriter(n_ctx=2048)


def test_bundled_adapter_ships_in_the_package_and_fits_the_embedded_base(default):
    path = bundled_adapter_path()
    assert path is not None and Path(path).name == BUNDLED_ADAPTER
    assert os.path.getsize(path) <= 20 * 2**20
    assert default.default_adapter == "default" and default.engine.adapters["default"].path == path
    meta = default.engine.adapters["default"].metadata
    base = default.engine.metadata
    assert meta["general.type"] == "adapter" and meta["adapter.type"] == "lora"
    assert meta["general.architecture"] == base["general.architecture"] == meta["qr_edge.base.architecture"]
    assert meta["qr_edge.base.name"] == base["general.name"]
    assert meta["qr_edge.prompt_format_version"] == COMPACT_PROMPT_FORMAT and meta["qr_edge.n_examples"] == "0"
    assert len(meta["qr_edge.base.sha256"]) == 64 and len(meta["qr_edge.train.dataset_sha256"]) == 64
    assert default.examples == [] and default.builder.compact


def test_default_rewrites_a_follow_up(default):
    res = default.rewrite(CONVERSATION)
    assert res.decision == Decision.REWRITTEN and "numpy" in res.rewrite.lower(), res
    # the bare base is not on it: the adapter is merged into the run copy's weights
    with pytest.raises(AdapterError, match="bare base"):
        default.render_prompt(CONVERSATION, adapter=None)


def test_default_keeps_a_standalone_query(default):
    messages = [
        {"role": "user", "content": "I'm looking for a cheap Italian restaurant in the centre."},
        {"role": "assistant", "content": "Bella Napoli is a cheap Italian restaurant in the centre."},
        {"role": "user", "content": "I also need a taxi to the train station at 18:00."},
    ]
    res = default.rewrite(messages)
    assert res.rewrite == messages[-1]["content"] and not res.changed


def test_adapter_none_is_the_bare_base_and_other_models_get_no_adapter(tmp_path):
    bare = Rewriter(adapter=None, n_ctx=1024, n_examples=0)
    assert bare.default_adapter is None and bare.adapter_names == []
    copy = tmp_path / "copy.gguf"
    copy.symlink_to(embedded_model_path())  # the same file under another name is still the embedded model
    assert Rewriter(copy, n_ctx=1024).default_adapter == "default"


def test_readme_main_command_runs_the_bundled_adapter_without_torch():
    code = (
        "import sys; from qr_edge.cli import main; sys.argv = ['qr-edge', 'rewrite', 'examples/conversation.json', '--json']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "QR_EDGE_MODEL"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert '"decision":"rewritten"' in proc.stdout.replace(" ", "")


def test_the_embedded_model_runs_as_a_run_copy_made_once(tmp_path, monkeypatch):
    """The shipped Q4_1 is requantized once into the cache (a real llama.cpp quantization, BF16 where the CPU
    multiplies bfloat16 natively, else Q8_0); a second call reuses the copy; an unwritable cache falls back to the
    shipped file."""
    from gguf import GGUFReader

    from qr_edge.model_source import (
        CACHE_ENV_VAR,
        DEFAULT_MODEL,
        embedded_of,
        embedded_run_path,
        resolve_model,
        run_type,
    )

    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "cache"))
    cache = tmp_path / "cache"
    cache.mkdir()
    # copies an earlier install made: the plain one is replaced, the merged one is another kind and stays
    stale = cache / f"SmolLM2-135M-Instruct.{run_type()}.1a-2b.gguf"
    other_kind = cache / f"SmolLM2-135M-Instruct.{run_type()}.1a-2b+smollm2-135m-rewrite.3c-4d.gguf"
    stale.write_bytes(b"old")
    other_kind.write_bytes(b"old")
    path = embedded_run_path()
    assert Path(path).parent == cache and resolve_model(None) == path and embedded_of(path) is DEFAULT_MODEL
    assert run_type() in Path(path).name
    reader = GGUFReader(path)
    assert {t.tensor_type.name for t in reader.tensors} == {run_type(), "F32"}  # every Q4_1 tensor requantized
    assert sorted(p.name for p in cache.iterdir()) == sorted([Path(path).name, other_kind.name])  # no temp file
    made = os.stat(path).st_mtime_ns
    assert embedded_run_path() == path and os.stat(path).st_mtime_ns == made
    assert Rewriter(adapter=None, n_ctx=1024).model_path == path

    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    monkeypatch.setenv(CACHE_ENV_VAR, str(blocked / "cache"))
    assert embedded_run_path() == embedded_model_path()


def test_out_of_the_box_the_adapter_is_merged_into_the_run_copy(tmp_path, monkeypatch):
    """``Rewriter()`` loads a run copy with the bundled adapter merged into its weights (made once, no temp file
    left), and rewrites as the adapter applied at run time does; calls for the bare base are refused with a
    typed error; an unwritable cache falls back to the adapter applied at run time on the shipped file."""
    from gguf import GGUFReader

    from qr_edge.engine import cpu_features
    from qr_edge.lora_merge import META_MERGED_ADAPTER
    from qr_edge.model_source import CACHE_ENV_VAR, embedded_run_path, run_type

    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "cache"))
    merged = Rewriter(n_ctx=2048)
    assert merged.engine.adapters["default"].merged and merged.engine.merged_adapter == "default"
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [Path(merged.model_path).name]
    reader = GGUFReader(merged.model_path)
    assert reader.fields[META_MERGED_ADAPTER].contents() == BUNDLED_ADAPTER
    assert {t.tensor_type.name for t in reader.tensors} == {run_type(), "F32"}
    assert run_type() == ("BF16" if "AVX512_BF16" in cpu_features() else "Q8_0")
    assert Rewriter(n_ctx=1024).model_path == merged.model_path  # made once

    runtime = Rewriter(embedded_run_path(), n_ctx=2048)  # a model named explicitly: the adapter runs at run time
    assert not runtime.engine.adapters["default"].merged and runtime.default_adapter == "default"
    golden = [[m.model_dump() for m in r.messages] for r in RewriteGenerator(seed=7, split="golden").generate(16)]
    same = sum(merged.rewrite(m).rewrite == runtime.rewrite(m).rewrite for m in golden)
    # the same model up to rounding: near-tie tokens may flip, rarely (BF16 copy: 15-16 of 16; Q8_0, on a CPU without
    # AVX512-BF16: 14, both flips in the raw output, e.g. a repeated clause)
    assert same >= 14, same

    with pytest.raises(AdapterError, match="merged"):
        merged.rewrite(CONVERSATION, adapter=None)
    # the merged file describes itself (the adapter's prompt format and examples), as convert's merged exports do
    plain = Rewriter(merged.model_path, n_ctx=2048)
    assert plain.default_adapter is None and plain.builder.compact and plain.examples == []
    assert reader.fields["qr_edge.prompt_format_version"].contents() == COMPACT_PROMPT_FORMAT
    assert plain.rewrite(golden[0]).rewrite == merged.rewrite(golden[0]).rewrite
    with pytest.raises(AdapterError, match="merged"):
        merged.engine.load_adapter("other", bundled_adapter_path())

    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    monkeypatch.setenv(CACHE_ENV_VAR, str(blocked / "cache"))
    fallback = Rewriter(n_ctx=1024)
    assert fallback.model_path == embedded_model_path() and not fallback.engine.adapters["default"].merged
    assert fallback.rewrite(CONVERSATION).decision == Decision.REWRITTEN


def test_merging_refuses_a_file_that_is_no_lora_adapter(tmp_path, monkeypatch):
    """A model file is refused with AdapterError; a corrupt file makes no merged copy (None: the caller applies
    the adapter at run time) and leaves nothing in the cache."""
    from qr_edge.lora_merge import merge_lora
    from qr_edge.model_source import CACHE_ENV_VAR, embedded_merged_path

    with pytest.raises(AdapterError, match="not a GGUF LoRA adapter"):
        merge_lora(embedded_model_path(), embedded_model_path(), tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "cache"))
    corrupt = tmp_path / "corrupt.lora.gguf"
    corrupt.write_bytes(b"GGUF" + bytes(range(256)) * 8)
    assert embedded_merged_path(str(corrupt)) is None
    assert list((tmp_path / "cache").iterdir()) == []


def test_without_native_bfloat16_the_run_copy_is_q8_0(tmp_path, monkeypatch):
    """On a CPU without AVX512-BF16 (AVX2-only laptops) BF16 would run slowly: the copy is Q8_0 there."""
    from gguf import GGUFReader

    from qr_edge import engine
    from qr_edge.model_source import CACHE_ENV_VAR, run_type

    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "cache"))
    monkeypatch.setattr(engine, "cpu_features", lambda: {"AVX", "AVX2", "FMA", "F16C"})
    assert run_type() == "Q8_0"
    rw = Rewriter(n_ctx=1024)
    assert ".Q8_0." in Path(rw.model_path).name and rw.engine.adapters["default"].merged
    assert {t.tensor_type.name for t in GGUFReader(rw.model_path).tensors} == {"Q8_0", "F32"}
    assert rw.rewrite(CONVERSATION).decision == Decision.REWRITTEN


def test_embedded_models_by_name_and_the_default_choice(tmp_path, monkeypatch):
    """``Rewriter()`` runs the measured winner (SmolLM2-135M + its adapter, docs/default-adapter.md); the other
    embedded model runs by name; a name that is also a file here is that file; a missing package says what to
    install."""
    from qr_edge.errors import ModelNotFoundError
    from qr_edge.model_source import (
        DEFAULT_MODEL,
        ENV_VAR,
        GEMMA3,
        SMOLLM2,
        EmbeddedModel,
        embedded_choice,
        embedded_model_path,
    )

    assert embedded_choice(None) is DEFAULT_MODEL is SMOLLM2
    assert embedded_choice("gemma3-270m") is GEMMA3 and embedded_choice("smollm2-135m") is SMOLLM2
    assert embedded_choice("models/other.gguf") is None
    monkeypatch.setenv(ENV_VAR, "gemma3-270m")
    assert embedded_choice(None) is GEMMA3
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gemma3-270m").write_bytes(b"GGUF")
    assert embedded_choice("gemma3-270m") is None
    missing = EmbeddedModel("x", "qr_edge_no_such_model_package", "no-such-model", "x.gguf", "x.lora.gguf", "-")
    with pytest.raises(ModelNotFoundError, match="pip install no-such-model"):
        embedded_model_path(missing)
