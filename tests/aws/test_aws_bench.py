"""The launch benchmark runs on its own moto server and stays flat in N."""

from __future__ import annotations

from imagebake.bench import launch_calls


def test_api_calls_do_not_grow_with_the_cluster():
    report = launch_calls.run(quiet=True)
    results = report["results"]
    assert set(results) == {1, 4, 32}
    assert report["ratio"] <= 1.2
    for n in (1, 4, 32):
        assert results[n]["launch_by_operation"]["RunInstances"] == 2
        assert results[n]["destroy_calls"] > 0
    # shrink: 1 and 29 slaves removed in the same few calls (one TerminateInstances)
    assert results[1]["shrink_calls"] is None
    assert results[4]["shrink_calls"] == results[32]["shrink_calls"]
    assert results[32]["shrink_removed"] == 29
    for n in (4, 32):
        assert results[n]["shrink_by_operation"]["TerminateInstances"] == 1
