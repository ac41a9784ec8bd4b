"""imagebake/bench/disco_bench.py: counting a dnsmasq --log-queries log."""

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
