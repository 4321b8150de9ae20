"""Programs shipped into the sandbox (standard library only; they never import hrmcode)."""
