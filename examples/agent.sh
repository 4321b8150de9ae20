#!/usr/bin/env bash
# Agentic evaluation on the demo repository, on CPU, in a few minutes:
#   synthesize --source repo: (bugs injected into examples/demo-repo, SWE-smith-format tasks)
#   -> eval swe with the gold agent (oracle: every task resolved), the stub (none), both routed
#      together with a planner, and eval compare
#   -> optionally, a model served by `hrmcode serve` acting through the OpenAI API.
#
#   bash examples/agent.sh [WORKSPACE [MODEL]]
#     WORKSPACE  default: a new temporary directory
#     MODEL      a model or quantized-model artifact (name in WORKSPACE, or a directory), e.g. `demo-int8`
#                after examples/pipeline.sh; served on a free loopback port for the last step
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo_root="$(dirname "$here")"
[ -d "$repo_root/.venv/bin" ] && export PATH="$repo_root/.venv/bin:$PATH"

export HRMCODE_HOME="${1:-$(mktemp -d -t hrmcode-agent.XXXXXX)}"
model="${2:-}"
mkdir -p "$HRMCODE_HOME"
echo "workspace: $HRMCODE_HOME" >&2
step() { echo >&2; echo "== $*" >&2; }

# The demo repository as a git repo of its own, committed at a fixed date (the same task ids every run).
demo="$HRMCODE_HOME/demo-repo"
rm -rf "$demo" && cp -r "$here/demo-repo" "$demo"
git -C "$demo" init -q && git -C "$demo" add -A
GIT_AUTHOR_DATE=2026-01-01T00:00:00Z GIT_COMMITTER_DATE=2026-01-01T00:00:00Z \
    git -C "$demo" -c user.name=hrmcode -c user.email=hrmcode@localhost commit -qm "demo repository"

step "synthesize: inject bugs into the demo repository -> repository tasks (fetch/repo-demo-repo)"
hrmcode synthesize --source "repo:$demo" --test-cmd "python -m pytest -q tests" --max-bugs 6 --levels plan

runs="$HRMCODE_HOME/runs"
step "eval swe --model oracle: an agent that writes the gold fix through the tool protocol (expect 100%)"
hrmcode eval swe --tasks repo-demo-repo --model oracle -j 2 --out "$runs/oracle" --fail-under 100

step "eval swe --model stub: submits at once (expect 0%)"
hrmcode eval swe --tasks repo-demo-repo --model stub --out "$runs/stub"

step "eval swe with two models routed across the tasks (3:1) and a planner, two attempts each"
hrmcode eval swe --tasks repo-demo-repo --model oracle --model stub --model-weights 3,1 --planner oracle \
    --attempts 2 --out "$runs/mixed"

step "eval compare: which tasks the oracle resolves that the stub does not"
hrmcode eval compare "$runs/stub" "$runs/oracle"

step "what a run holds"
ls -l "$runs/oracle" >&2
head -c 600 "$runs/oracle/predictions.jsonl" >&2; echo >&2
python - "$runs/oracle" <<'EOF'
import json, sys
from pathlib import Path

run = Path(sys.argv[1])
report = json.loads((run / "report.json").read_text())
print(f"report.json: resolved {report['resolved_instances']} of {report['total_instances']}", file=sys.stderr)
first = json.loads((run / "trajectories.jsonl").read_text().splitlines()[0])
for step in first["steps"]:
    print(f"  step {step['index']}: {step['action']['kind']:6} exit={step['exit_code']} reward={step['reward']}",
          file=sys.stderr)
EOF

step "learn from acting: the mixed run's trajectories (resolved and failed, with their rewards) -> tool examples -> train"
hrmcode synthesize --source "$runs/mixed" --levels tool -o "$HRMCODE_HOME/agent-examples"
hrmcode train "$HRMCODE_HOME/agent-examples" --config tiny --seq-len 4096 --batch-size 1 --max-steps 2 \
    --reward-weighting weight --failed-weight 0.25 --eval-generate 0 -o "$HRMCODE_HOME/agent-model"

if [ -n "$model" ]; then
    step "eval swe through hrmcode serve: $model acts through the OpenAI API (resolution is whatever it is)"
    port="$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    hrmcode serve "$model" --port "$port" --model-name agent >"$HRMCODE_HOME/serve.log" 2>&1 &
    server=$!
    trap 'kill "$server" 2>/dev/null || true' EXIT
    for _ in $(seq 120); do
        python -c "import httpx, sys; httpx.get('http://127.0.0.1:$port/health').raise_for_status()" 2>/dev/null && break
        kill -0 "$server" 2>/dev/null || { cat "$HRMCODE_HOME/serve.log" >&2; exit 1; }
        sleep 1
    done
    hrmcode eval swe --tasks repo-demo-repo --model "openai:http://127.0.0.1:$port/v1" --model-name agent \
        --step-limit 3 --max-tokens 64 --limit 2 --out "$runs/served"
fi

echo >&2
echo "agent example finished; runs in $runs" >&2
