"""The local base images bakes start from (never pulled), built by `invoke base-image`
through each target (Target.build_base_image): docker.py makes imagebake/base:bookworm,
qemu.py a bootable Debian 12 qcow2."""
