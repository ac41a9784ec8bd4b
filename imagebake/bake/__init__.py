"""Images: one Packer build per target, skipped when its inputs are unchanged.

build.py (bake(): the only bake path), variables.py (flags and Packer variables),
hashing.py (content hash), existing.py (images baked from the same inputs),
packer.py (`packer -machine-readable`), records.py (build/images.json),
qemu_inputs.py (+ qemu-finish-bake.sh), source_ami.py, vendor.py (the vendored Disco
archives), base/ (base images), verify.py (testinfra on baked images), images.py (list
and prune).
"""
