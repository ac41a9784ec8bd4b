# QEMU target: boot the base qcow2 with a throw-away NoCloud seed that lets Packer's SSH in,
# run the same provision/ scripts as the other targets, remove the bake login and save the
# disk as the role's qcow2. The wrapper (imagebake/bake/qemu_inputs.py) makes the seed, the key
# and picks the accelerator; `packer validate` passes with the defaults alone.

variable "qemu_base" {
  type        = string
  description = "Base disk the qemu sources boot: build/base/debian12.qcow2 (invoke base-image --target qemu) or an Ubuntu 14.04 cloud image (qcow2)."
  default     = "build/base/debian12.qcow2"

  validation {
    condition     = var.qemu_base != "" && substr(var.qemu_base, 0, 1) != "-"
    error_message = "The qemu_base must be the path of a qcow2 disk image."
  }
}

variable "qemu_accelerator" {
  type        = string
  description = "kvm when the wrapper's probe ran a guest under KVM, else tcg (software)."
  default     = "tcg"

  validation {
    condition     = contains(["kvm", "tcg"], var.qemu_accelerator)
    error_message = "The qemu_accelerator must be kvm or tcg."
  }
}

variable "qemu_seed_dir" {
  type        = string
  description = "Directory holding the bake's NoCloud user-data and meta-data (made per bake by the wrapper)."
  default     = "build/qemu/seed"
}

variable "qemu_ssh_username" {
  type        = string
  description = "Throw-away bake login created by the seed and removed before the disk is saved."
  default     = "imagebake-bake"

  validation {
    condition     = substr(var.qemu_ssh_username, 0, 14) == "imagebake-bake" && trim(var.qemu_ssh_username, "abcdefghijklmnopqrstuvwxyz0123456789-") == ""
    error_message = "The qemu_ssh_username must start with imagebake-bake (lowercase, digits, -)."
  }
}

variable "qemu_ssh_key" {
  type        = string
  description = "Private key of the throw-away bake login (generated per bake by the wrapper)."
  default     = ""
}

variable "qemu_output_dir" {
  type        = string
  description = "Directory under which each role's qcow2 is written (<dir>/<role>-<hash12>-<stamp>/)."
  default     = "build/qemu"
}

variable "qemu_memory" {
  type        = number
  description = "MiB of memory per bake VM."
  default     = 1024

  validation {
    condition     = var.qemu_memory >= 512 && var.qemu_memory <= 16384
    error_message = "The qemu_memory must be 512-16384 MiB."
  }
}

variable "qemu_cpus" {
  type        = number
  description = "Virtual CPUs per bake VM (master and node bake at the same time)."
  default     = 1

  validation {
    condition     = var.qemu_cpus >= 1 && var.qemu_cpus <= 16
    error_message = "The qemu_cpus must be 1-16."
  }
}

variable "qemu_disk_size" {
  type        = string
  description = "Size of each baked disk (at least the base's size), e.g. 4096M."
  default     = "4096M"
}

locals {
  qemu_seed_files = ["${var.qemu_seed_dir}/*-data"]
  qemu_ssh_key    = var.qemu_ssh_key == "" ? null : var.qemu_ssh_key
  qemu_vm_name    = { for r in local.roles : r => "imagebake-${r}-${local.hash12[r]}.qcow2" }
}

source "qemu" "master" {
  disk_image             = true
  iso_url                = var.qemu_base
  iso_checksum           = "none"
  format                 = "qcow2"
  disk_size              = var.qemu_disk_size
  disk_interface         = "virtio"
  net_device             = "virtio-net"
  machine_type           = "pc"
  accelerator            = var.qemu_accelerator
  memory                 = var.qemu_memory
  cpus                   = var.qemu_cpus
  headless               = true
  vnc_bind_address       = "127.0.0.1"
  skip_compaction        = true
  cd_files               = local.qemu_seed_files
  cd_label               = "cidata"
  boot_wait              = "0s"
  communicator           = "ssh"
  ssh_host               = "127.0.0.1"
  ssh_username           = var.qemu_ssh_username
  ssh_private_key_file   = local.qemu_ssh_key
  ssh_timeout            = "20m"
  ssh_handshake_attempts = 200
  shutdown_command       = "sudo -n /bin/sh /var/tmp/imagebake-finish-bake.sh ${var.qemu_ssh_username}"
  shutdown_timeout       = "5m"
  output_directory       = "${var.qemu_output_dir}/master-${local.hash12["master"]}-${local.stamp}"
  vm_name                = local.qemu_vm_name["master"]
  qemuargs               = [["-serial", "file:${var.qemu_output_dir}/master-console.log"]]
}

source "qemu" "node" {
  disk_image             = true
  iso_url                = var.qemu_base
  iso_checksum           = "none"
  format                 = "qcow2"
  disk_size              = var.qemu_disk_size
  disk_interface         = "virtio"
  net_device             = "virtio-net"
  machine_type           = "pc"
  accelerator            = var.qemu_accelerator
  memory                 = var.qemu_memory
  cpus                   = var.qemu_cpus
  headless               = true
  vnc_bind_address       = "127.0.0.1"
  skip_compaction        = true
  cd_files               = local.qemu_seed_files
  cd_label               = "cidata"
  boot_wait              = "0s"
  communicator           = "ssh"
  ssh_host               = "127.0.0.1"
  ssh_username           = var.qemu_ssh_username
  ssh_private_key_file   = local.qemu_ssh_key
  ssh_timeout            = "20m"
  ssh_handshake_attempts = 200
  shutdown_command       = "sudo -n /bin/sh /var/tmp/imagebake-finish-bake.sh ${var.qemu_ssh_username}"
  shutdown_timeout       = "5m"
  output_directory       = "${var.qemu_output_dir}/node-${local.hash12["node"]}-${local.stamp}"
  vm_name                = local.qemu_vm_name["node"]
  qemuargs               = [["-serial", "file:${var.qemu_output_dir}/node-console.log"]]
}
