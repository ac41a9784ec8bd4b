"""The EC2 target: cluster.py (orchestration, AwsTarget), plan.py (a checked launch),
inputs.py and preflight.py (checks, creating nothing), dryrun.py (launch --dry-run),
network.py (region, subnet, security and placement groups), instances.py (RunInstances,
describe, remove by tag), userdata.py (the agent's spec), hostkeys.py (pinned SSH host
keys), ssh.py (access), report.py (what is printed), images.py (what the bake needs:
AMIs). The signed status call is imagebake.agent_client's; "ready" is
targets/ready.py's."""
