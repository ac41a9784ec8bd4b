"""Run ONE module of Disco's own test suite on the master and print one JSON line.

Uploaded by imagebake/disco/selftest.py and run as the `disco` user inside a copy of
Disco's tests/ directory (the unpacked 0.5.4 source tree keeps it at
/usr/local/src/disco/tests): `python3 selftest_remote.py test_simple`. It loads the module
the way `disco test` does (disco.test.TestLoader with the node's DiscoSettings, so
DISCO_TEST_HOST is the master's name the slaves resolve) and runs it with unittest.
Further arguments `TEST_ID=REASON` mark single tests skipped with that reason (a test that
needs an outside network, see selftest.SKIPS).
The last line of stdout is {"module", "run", "failures", "errors", "skipped", "detail"};
"detail" is the last line of the first failure's traceback. Standalone: it imports only
the standard library and Disco, never imagebake.
"""

import json
import os
import sys
import unittest


def last_line(text):
    lines = [x.strip() for x in str(text).splitlines() if x.strip()]
    return lines[-1][:300] if lines else ""


def tests_of(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from tests_of(item)
        else:
            yield item


def skip_named(suite, skips):
    """Each test whose id (module.Class.method) is in SKIPS is skipped with its reason."""
    for test in tests_of(suite):
        reason = skips.get(test.id())
        if reason and hasattr(test, "_testMethodName"):
            method = getattr(test, test._testMethodName)
            setattr(test, test._testMethodName, unittest.skip(reason)(method))


def main(module, skips):
    sys.path.insert(0, os.getcwd())
    result = {"module": module, "run": 0, "failures": 0, "errors": 0, "skipped": 0,
              "detail": ""}
    try:
        from disco.settings import DiscoSettings
        from disco.test import TestLoader

        suite = TestLoader(DiscoSettings()).loadTestsFromNames([module])
        skip_named(suite, skips)
        outcome = unittest.TextTestRunner(stream=sys.stdout, verbosity=2).run(suite)
    except Exception as exc:  # the module does not even import: an error of the module
        result.update(errors=1, detail=f"{type(exc).__name__}: {exc}")
    else:
        result.update(run=outcome.testsRun, failures=len(outcome.failures),
                      errors=len(outcome.errors), skipped=len(outcome.skipped))
        bad = outcome.errors + outcome.failures
        if bad:
            result["detail"] = f"{bad[0][0].id()}: {last_line(bad[0][1])}"
        elif outcome.skipped:
            result["detail"] = "skipped: " + last_line(outcome.skipped[0][1])
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0 if not (result["failures"] or result["errors"]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], dict(arg.split("=", 1) for arg in sys.argv[2:])))
