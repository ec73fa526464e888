"""What ``qr-edge convert`` takes and reports (pydantic: it crosses the CLI and JSON boundary)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ConvertOptions(BaseModel):
    base: str
    adapter: str | None = None
    out: str
    quants: list[str] = Field(default_factory=lambda: ["Q4_K_M"])
    verify: bool = True
    force: bool = False
    name: str | None = None
    pre_tokenizer: str | None = None
    n_examples: int | None = None
    adapter_only: bool = False


class OutputFile(BaseModel):
    quant: str
    path: str
    bytes: int


class ParityRow(BaseModel):
    """One output type against the merged HF model, over every position of the probe prompts.

    ``passed`` needs tokenizer parity and ``decisive_top1_agreement >= min_decisive_top1_agreement``: the
    decisive figure, counted where the HF model is decisive; ``top1_agreement`` (every position) is shown
    beside it and decides nothing (quantization flips near-ties)."""

    quant: str
    top1_agreement: float
    decisive_top1_agreement: float
    decisive_positions: int
    min_decisive_top1_agreement: float
    mean_kl: float
    max_abs_logit_diff: float
    tokenizer_agreement: float
    positions: int
    passed: bool


class MergeCheck(BaseModel):
    """Adapter model vs merged model in transformers (merge correctness)."""

    max_abs_logit_diff: float
    top1_agreement: float
    passed: bool


class ConvertReport(BaseModel):
    base: str
    adapter: str | None = None
    architecture: str
    parameters: int
    outputs: list[OutputFile] = Field(default_factory=list)
    stage_seconds: dict[str, float] = Field(default_factory=dict)
    peak_rss_mb: float = 0.0
    merge_check: MergeCheck | None = None
    parity: list[ParityRow] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


class AdapterExportReport(BaseModel):
    """``--adapter-only``: the GGUF LoRA written and its check against the peft model."""

    base: str
    adapter: str
    out: str
    weights: int = 0
    bytes: int = 0
    sha256: str = ""
    top1_agreement: float | None = None
    mean_kl: float | None = None
    max_abs_logit_diff: float | None = None
    positions: int = 0
    warnings: list[str] = Field(default_factory=list)
