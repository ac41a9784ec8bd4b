"""A Disco probe job (the cluster tests and `invoke bench --what dns` run it on the master
as disco):

    python3 probe_job.py MODE TASKS SECONDS

TASKS map tasks over raw:// inputs (no data locality: any free slot takes them), each
sleeping SECONDS and yielding (its host name, 1); one reduce sums per host. MODE:
  hosts   as above (prints `host count` lines)
  raise   every map raises ValueError("imagebake probe: map failed on purpose")
  stderr  every map prints a line to sys.stderr first (Disco's worker turns it into a message)
  fd2     every map writes a line straight to file descriptor 2, Disco's worker protocol
          channel, bypassing sys.stderr
The job's name goes to stderr as `job NAME`; JOB_TIMEOUT (s) bounds the wait.
"""

import os
import sys


def map_probe(entry, params):
    import socket
    import sys
    import time

    if params["mode"] == "raise":
        raise ValueError("imagebake probe: map failed on purpose")
    if params["mode"] == "stderr":
        sys.stderr.write("imagebake probe: a line a job printed to stderr\n")
        sys.stderr.flush()
    if params["mode"] == "fd2":
        import os
        os.write(2, b"imagebake probe: a line written to fd 2\n")
    time.sleep(params["seconds"])
    yield socket.gethostname(), 1


def reduce_probe(iter, params):
    from disco.util import kvgroup

    for host, counts in kvgroup(sorted(iter)):
        yield host, sum(counts)


def main(argv):
    from disco.core import Job, result_iterator

    mode, tasks, seconds = argv[1], int(argv[2]), float(argv[3])
    job = Job().run(input=[f"raw://t{i}" for i in range(tasks)], map=map_probe,
                    reduce=reduce_probe, params={"mode": mode, "seconds": seconds})
    sys.stderr.write("job " + job.name + "\n")
    sys.stderr.flush()
    results = job.wait(show=False, timeout=float(os.environ.get("JOB_TIMEOUT", "300")))
    for host, count in result_iterator(results):
        sys.stdout.write(f"{host} {count}\n")


if __name__ == "__main__":
    main(sys.argv)
