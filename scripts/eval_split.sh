#!/bin/bash
# scripts/eval_split.sh NAME dev|test [qr-edge eval options...]: every file of that split of build/mix, with the
# baselines, into build/eval/NAME-SPLIT.json and its cases; the model card's per-style tables come from two such
# reports through scripts/compare_evals.py. A later --model overrides the embedded default.
set -euo pipefail
name=$1; split=$2; shift 2
mkdir -p build/eval
args=(); for f in build/mix/"$split"-*.jsonl; do args+=(--data "$f"); done
exec .venv/bin/qr-edge eval "${args[@]}" --model smollm2-135m --baselines \
	--out "build/eval/$name-$split.json" --cases "build/eval/$name-$split.cases.jsonl" "$@"
