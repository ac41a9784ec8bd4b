"""imagebake/bench/disco_bench.py: counting a dnsmasq --log-queries log; the ddfs-load
ratio as the median of copy/load pairs."""

from pathlib import Path

from imagebake.bench import disco_bench
from imagebake.bench.disco_bench import count_dns

LOG = """\
Nov 26 08:54:53 dnsmasq[260]: query[A] node02 from 10.0.0.128
Nov 26 08:54:53 dnsmasq[260]: /etc/imagebake/hosts node02 is 10.0.0.131
Nov 26 08:54:53 dnsmasq[260]: query[AAAA] node02 from 10.0.0.128
Nov 26 08:54:53 dnsmasq[260]: config node02 is NODATA-IPv6
Nov 26 08:54:54 dnsmasq[260]: query[A] pypi.org from 127.0.0.1
Nov 26 08:54:54 dnsmasq[260]: forwarded pypi.org to 127.0.0.11
Nov 26 08:54:54 dnsmasq[260]: reply pypi.org is 151.101.0.223
"""


def test_local_and_forwarded_per_asker():
    counts = count_dns(LOG, {"10.0.0.128": "node01", "127.0.0.1": "master"})
    assert counts == {"node01": {"queries": 2, "forwarded": 0, "local": 2},
                      "master": {"queries": 1, "forwarded": 1, "local": 0}}


def test_load_ratio_is_the_median_of_copy_then_load_pairs_each_into_a_new_tag(monkeypatch):
    """On a shared host one copy/load pair is noise: each round copies then loads (into its
    own tag, so nothing is skipped as already stored), and the figure is the median."""
    cps, loads = iter([40.0, 80.0, 50.0]), iter([10.0, 60.0, 30.0])  # MB/s written
    tags = []

    def load(record, sources, tag, replicas=0):
        tags.append((tag, replicas))
        return {"mb": 100.0, "seconds": 1.0, "mb_s": 100.0, "replica_mb_s": next(loads),
                "replicas": 3, "blobs": 6}

    monkeypatch.setattr(disco_bench, "_docker_cp_rate", lambda record, paths: next(cps))
    monkeypatch.setattr(disco_bench, "_load", load)
    got, cp = disco_bench._paired({}, Path("big.tsv"), "data:bench", 0, 3)
    assert tags == [("data:bench", 0), ("data:bench-r2", 0), ("data:bench-r3", 0)]
    assert got["rounds"] == [0.25, 0.75, 0.6] and got["ratio"] == 0.6 and cp == 50.0
    assert got["replica_mb_s"] == 10.0 and got["docker_cp_mb_s"] == 40.0  # round 1's own
