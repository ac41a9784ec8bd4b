"""The qemu target: cluster.py (QemuTarget), vm.py (one VM's files and process),
netns.py (the cluster's bridge in a namespace of its own), ec2.py and imds.py (the
emulated EC2 fabric), ssh.py (access, host keys pinned from the master agent's signed
status), images.py (what the bake needs: the base qcow2 and the image kind)."""
