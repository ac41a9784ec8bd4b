"""Runs a user's Disco job script on the master for `invoke job` (given with python3 -c,
stdlib and Disco only, Python 3.4+):

    python3 -c "$(cat job_runner.py)" SCRIPT [ARGS ...]

It runs SCRIPT as __main__ with ARGS (the folders named in IMAGEBAKE_WITH, beside it,
on sys.path: their modules import, and Disco ships the ones a job's functions use), and
tells the laptop, on stderr, in lines that start with MARK followed by JSON: its own pid
at once; the name of every job the script submits (by wrapping disco.job.Job.run); while
a job runs, its stages from Disco's events API
(GET /disco/ctrl/jobinfo: per stage pending, waiting, running, done, failed); and at the
end each job's final state. With IMAGEBAKE_DETACH=1 it exits as soon as the first job is
submitted (the job runs on in Disco). Everything else the script prints passes through.
"""

import json
import os
import runpy
import sys
import threading
import time
import urllib.request

MARK = "@@imagebake "
MASTER = "http://127.0.0.1:%s" % os.environ.get("DISCO_PORT", "8989")
LOCK = threading.Lock()
NAMES = []


def say(**fields):
    with LOCK:
        sys.__stderr__.write(MARK + json.dumps(fields) + "\n")
        sys.__stderr__.flush()


def jobinfo(name):
    try:
        url = "%s/disco/ctrl/jobinfo?name=%s" % (MASTER, name)
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read().decode("utf-8"))
    except (OSError, ValueError):
        return None


def watch(name):
    last = None
    while True:
        info = jobinfo(name)
        if info is not None:
            seen = (info.get("active"), info.get("pipeline"))
            if seen != last:
                last = seen
                say(progress=name, active=info.get("active"), pipeline=info.get("pipeline"))
            if info.get("active") in ("ready", "dead"):
                return
        time.sleep(1)


def wrap_run():
    from disco import job as disco_job

    real = disco_job.Job.run

    def run(self, **jobargs):
        done = real(self, **jobargs)
        NAMES.append(self.name)
        say(job=self.name)
        if os.environ.get("IMAGEBAKE_DETACH") == "1":
            sys.stdout.flush()
            os._exit(0)
        thread = threading.Thread(target=watch, args=(self.name,))
        thread.daemon = True
        thread.start()
        return done

    disco_job.Job.run = run


def main(argv):
    say(pid=os.getpid())
    wrap_run()
    script = os.path.abspath(argv[1])
    sys.argv = [script] + argv[2:]
    sys.path.insert(0, os.path.dirname(script))
    for folder in filter(None, os.environ.get("IMAGEBAKE_WITH", "").split(":")):
        sys.path.insert(0, os.path.join(os.path.dirname(script), folder))  # --with DIR
    code = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            sys.stderr.write(str(exc.code) + "\n")
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    for name in NAMES:
        info = jobinfo(name) or {}
        say(final=name, active=info.get("active"), pipeline=info.get("pipeline"))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
