# attack: raise SystemExit(0) inside the call, hoping the harness reads it as a clean end
# task: HumanEval/0
    raise SystemExit(0)
