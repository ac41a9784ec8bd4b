# Read only by `packer init packer/init` on Packer >= 1.7 (plugins live outside
# the core there). Packer 1.6 never loads this directory: docker,
# amazon-ebs and qemu are built in.

packer {
  required_version = ">= 1.6.6"

  required_plugins {
    docker = {
      source  = "github.com/hashicorp/docker"
      version = ">= 1.0.8"
    }
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = ">= 1.2.6"
    }
    qemu = {
      source  = "github.com/hashicorp/qemu"
      version = ">= 1.0.9"
    }
  }
}
