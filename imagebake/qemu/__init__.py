"""QEMU target helpers: accelerator detection, NoCloud seeds, network namespaces."""
