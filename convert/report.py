"""What ``qr-edge convert`` takes and reports (pydantic: it crosses the CLI and JSON boundary)."""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, Field


class ConvertOptions(BaseModel):
    base: str
    adapter: Optional[str] = None
    out: str
    quants: list[str] = Field(default_factory=lambda: ["Q4_K_M"])
    verify: bool = True
    force: bool = False
    name: Optional[str] = None
    pre_tokenizer: Optional[str] = None
    n_examples: Optional[int] = None


class OutputFile(BaseModel):
    quant: str
    path: str
    bytes: int


class ParityRow(BaseModel):
    """One output type against the merged HF model, over every position of the probe prompts."""

    quant: str
    top1_agreement: float
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
    adapter: Optional[str] = None
    architecture: str
    parameters: int
    outputs: list[OutputFile] = Field(default_factory=list)
    stage_seconds: dict[str, float] = Field(default_factory=dict)
    peak_rss_mb: float = 0.0
    merge_check: Optional[MergeCheck] = None
    parity: list[ParityRow] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
