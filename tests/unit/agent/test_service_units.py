"""provision/50-agent.sh: the agent's boot units (the fence before the network, the TTL
unit independent of the agent, the open file limit)."""

import os
import re


def test_service_unit_raises_the_open_file_limit():
    text = open(os.path.join(os.path.dirname(__file__), "..", "..", "..", "provision",
                             "50-agent.sh")).read()
    assert re.search(r"^LimitNOFILE=\d{5,}$", text, re.M)
    assert re.search(r"^limit nofile \d{5,} \d{5,}$", text, re.M)


def test_fence_service_runs_before_the_network(tmp_path):
    text = open(os.path.join(os.path.dirname(__file__), "..", "..", "..", "provision",
                             "50-agent.sh")).read()
    assert "imagebake-fence" in text and "Before=network-pre.target" in text
    assert "--uid-owner 0" in text and "169.254.169.254" in text


def test_ttl_units_in_the_provisioning():
    text = open(os.path.join(os.path.dirname(__file__), "..", "..", "..", "provision",
                             "50-agent.sh")).read()
    assert "imagebake-ttl" in text
    assert re.search(r"ExecStart=\S+ ttl", text)
    # the agent's unit stopping or failing must not take the TTL with it
    ttl_unit = text.split("imagebake-ttl.service")[1][:800]
    assert "PartOf" not in ttl_unit and "BindsTo" not in ttl_unit
