"""The EC2 target: cluster.py (orchestration, AwsTarget), inputs.py and preflight.py
(checks, creating nothing), network.py (region, subnet, security and placement groups),
instances.py (RunInstances, describe, remove by tag), userdata.py (the agent's spec),
readiness.py (the signed status call), hostkeys.py (pinned SSH host keys), ssh.py
(access), report.py (what is printed)."""
