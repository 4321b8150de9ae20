# attack: sleep past the time limit (and ignore the signals a harness might use to stop it)
# task: HumanEval/0
    import signal, time
    for sig in (signal.SIGALRM, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    time.sleep(100)
    return True
