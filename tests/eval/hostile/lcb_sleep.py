# attack: ignore the signals and sleep past the per-test limit
# task: fx_sum_lines
import signal, time
for sig in (signal.SIGALRM, signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, signal.SIG_IGN)
time.sleep(100)
