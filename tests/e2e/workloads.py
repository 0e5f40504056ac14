"""Workloads that more than one end-to-end file runs, written once."""

# Waits for Ctrl-C, then behaves as a training script that saves a checkpoint: the proof that the
# signal reached the workload itself (a file it wrote, its exit code 130).
SLEEPER = ("import sys, time\n"
           "print('ready', flush=True)\n"
           "try:\n"
           "    time.sleep(120)\n"
           "except KeyboardInterrupt:\n"
           "    open('saw-sigint.txt', 'w').write('yes')\n"
           "    print('saving a checkpoint before exiting', flush=True)\n"
           "    sys.exit(130)\n")
