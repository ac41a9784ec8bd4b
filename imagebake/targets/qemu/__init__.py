"""The qemu target: cluster.py (QemuTarget), vm.py (one VM's files and process),
netns.py (the cluster's bridge in a namespace of its own), ssh.py (access, host keys
pinned from the serial console)."""
