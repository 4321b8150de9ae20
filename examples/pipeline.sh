#!/usr/bin/env bash
# The whole hrmcode pipeline on built-in data, on CPU, in a few minutes:
#   fetch -> analyze -> synthesize -> validate -> train -> quantize -> eval -> serve
#
# Training data never comes from a benchmark that is evaluated: the model is trained on bugs
# injected into the project's own demo repository (examples/demo-repo) and pretrained on a slice of
# the Python standard library; HumanEval is fetched only to evaluate and to let `validate` reject
# anything that overlaps it.
#
#   bash examples/pipeline.sh [WORKSPACE]     (default: a new temporary directory)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo_root="$(dirname "$here")"
[ -d "$repo_root/.venv/bin" ] && export PATH="$repo_root/.venv/bin:$PATH"

export HRMCODE_HOME="${1:-$(mktemp -d -t hrmcode-pipeline.XXXXXX)}"
mkdir -p "$HRMCODE_HOME"
echo "workspace: $HRMCODE_HOME" >&2
step() { echo >&2; echo "== $*" >&2; }

# The demo repository as a git repo of its own (bug injection diffs against its HEAD).
demo="$HRMCODE_HOME/demo-repo"
rm -rf "$demo" && cp -r "$here/demo-repo" "$demo"
git -C "$demo" init -q && git -C "$demo" add -A
# A fixed author and date give the same commit id, so the same task ids and train/held-out split every run.
GIT_AUTHOR_DATE=2026-01-01T00:00:00Z GIT_COMMITTER_DATE=2026-01-01T00:00:00Z \
    git -C "$demo" -c user.name=hrmcode -c user.email=hrmcode@localhost commit -qm "demo repository"

stdlib="$(python -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')"

step "fetch: the benchmark to evaluate on, and a pretraining corpus"
hrmcode fetch humaneval
hrmcode fetch code --from "$stdlib/json" --from "$stdlib/email" --from "$stdlib/collections" --name stdlib

step "synthesize: inject bugs into the demo repository -> SWE-smith-format tasks -> training examples"
hrmcode synthesize --source "repo:$demo" --test-cmd "python -m pytest -q tests" --max-bugs 24

step "analyze: profile the tasks"
hrmcode analyze repo-demo-repo

step "validate: schema, duplicates, contamination with HumanEval, execution"
hrmcode validate repo-demo-repo

step "train: the tiny HRM, pretraining on the corpus then fine-tuning on the accepted examples"
hrmcode train repo-demo-repo --config tiny --seq-len 512 --batch-size 4 --pretrain stdlib --pretrain-steps 20 \
    --max-steps 50 --eval-generate 2 --name demo

step "quantize: int8 weights, with the held-out loss before and after"
hrmcode quantize demo --weights int8 --name demo-int8 --limit 8 --exact-match-limit 2

step "eval: HumanEval with the quantized model (a tiny model scores ~0: this proves the harness, not the model)"
hrmcode eval humaneval --model checkpoint:demo-int8 --limit 4 --max-tokens 32

step "serve: the OpenAI-compatible API, one request, then stop"
python "$here/serve_smoke.py" demo-int8

echo >&2
echo "pipeline finished; artifacts in $HRMCODE_HOME" >&2
