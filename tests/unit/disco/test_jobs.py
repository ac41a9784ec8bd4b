"""imagebake/disco/jobs.py: the one-line reason of a failed job, from Disco's own events."""

from __future__ import annotations

from imagebake.disco import jobs

RAISED = [
    ["t", "master", "map:0 assigned to node01"],
    ["t", "master", "FATAL: [map:0] Traceback (most recent call last):\n  File \"w.py\", line 3,"
                    " in map\nValueError: map failed on purpose\n"],
]
FD2 = [
    ["t", "master", "map:1 assigned to node02"],
    ["t", "node02", "WARNING: [map:1] Could not parse worker event: invalid_length"],
    ["t", "master", "WARNING: [map:1] Worker died. Last words:\nhello on fd 2\nMSG 24 \"x\"\n"],
]


def test_a_raise_is_the_exception_line_and_the_slave_it_ran_on():
    assert jobs.failure_reason(RAISED) == "map:0 on node01: ValueError: map failed on purpose"


def test_a_write_to_fd2_names_the_protocol_channel():
    why = jobs.failure_reason(FD2)
    assert why.startswith("map:1 on node02: the job wrote to stderr") and "\n" not in why


def test_task_hosts_from_assignments():
    assert jobs.task_hosts(RAISED + FD2) == {"node01": ["map:0"], "node02": ["map:1"]}
    assert jobs.failure_reason([]) == ""


def test_a_lost_slave_is_named():
    events = [["t", "master", "map:4 assigned to node03"],
              ["t", "master", "WARNING: [map:4] Connection lost to the node (network busy?)"],
              ["t", "master", 'Task map:4 failed on "node03", 1th failures so far. Sleeping 14'
                              ' seconds before retrying.']]
    assert jobs.failure_reason(events) == ("map:4 failed on node03 (1 task failures; a slave "
                                           "lost?)")
