# Inputs of a bake. The wrapper (imagebake/packer.py) passes content_hash and,
# for AWS, source_ami; everything else has a safe default.

variable "content_hash" {
  type        = map(string)
  description = "sha256 of every bake input, per role (computed by imagebake/hashing.py)."
  default = {
    master = "0000000000000000000000000000000000000000000000000000000000000000"
    node   = "0000000000000000000000000000000000000000000000000000000000000000"
  }

  validation {
    condition     = length(var.content_hash) == 2 && length(lookup(var.content_hash, "master", "")) == 64 && length(lookup(var.content_hash, "node", "")) == 64 && trim(join("", values(var.content_hash)), "0123456789abcdef") == ""
    error_message = "The content_hash must map master and node to 64 lowercase hex digits."
  }
}

variable "disco_source" {
  type        = string
  description = "Where Disco comes from: vendored (the pinned archives of vendor/disco.lock, offline), none, a git URL (https:// or git://), an absolute path to a source tarball, or an absolute path to a disco.lock (vendored, with that lock). offline is none set by the wrapper when the archives are missing and GitHub cannot be reached (local targets)."
  default     = "vendored"

  validation {
    condition     = contains(["vendored", "none", "offline"], var.disco_source) || contains(["https://", "git://g", "ssh://g"], substr(var.disco_source, 0, 8)) || (substr(var.disco_source, 0, 1) == "/" && (contains([".tgz", ".tar"], substr(var.disco_source, -4, 4)) || contains([".tar.gz"], substr(var.disco_source, -7, 7)) || contains([".tar.bz2"], substr(var.disco_source, -8, 8)) || contains(["/disco.lock"], substr(var.disco_source, -11, 11))))
    error_message = "The disco_source must be vendored, none, offline, a git URL, an absolute path to a .tar.gz/.tgz/.tar.bz2/.tar file or to a disco.lock."
  }
}

variable "disco_ref" {
  type        = string
  description = "Disco to build: a git ref for a git URL; for vendored, a Disco ref of vendor/disco.lock (0.5.4 or develop)."
  default     = "0.5.4"

  validation {
    condition     = var.disco_ref != "" && trim(var.disco_ref, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._/-") == "" && substr(var.disco_ref, 0, 1) != "-"
    error_message = "The disco_ref must be a plain git ref (letters, digits, . _ / -)."
  }
}

variable "docker_base" {
  type        = string
  description = "Docker image the docker sources start from (never pulled): imagebake/base:bookworm or ubuntu:14.04."
  default     = "imagebake/base:bookworm"

  validation {
    condition     = var.docker_base != "" && trim(var.docker_base, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._/:@-") == "" && substr(var.docker_base, 0, 1) != "-"
    error_message = "The docker_base must be a Docker image reference such as imagebake/base:bookworm."
  }
}

variable "aws_region" {
  type        = string
  description = "AWS region the AMIs are built in."
  default     = "us-east-1"

  validation {
    condition     = length(split("-", var.aws_region)) >= 3 && trim(var.aws_region, "abcdefghijklmnopqrstuvwxyz0123456789-") == ""
    error_message = "The aws_region must look like us-east-1."
  }
}

variable "source_ami" {
  type        = string
  description = "AMI the amazon-ebs sources start from (Ubuntu 14.04 HVM EBS); resolved by the wrapper when empty."
  default     = ""

  validation {
    condition     = var.source_ami == "" || (substr(var.source_ami, 0, 4) == "ami-" && contains([12, 21], length(var.source_ami)) && trim(substr(var.source_ami, 4, 17), "0123456789abcdef") == "")
    error_message = "The source_ami must be empty or an AMI id such as ami-0123456789abcdef0."
  }
}

variable "instance_type" {
  type        = string
  description = "Instance type the AMIs are built on (t2: trusty's 3.13 kernel has no ENA driver)."
  default     = "t2.medium"

  validation {
    condition     = length(split(".", var.instance_type)) == 2 && trim(var.instance_type, "abcdefghijklmnopqrstuvwxyz0123456789.-") == ""
    error_message = "The instance_type must look like t2.medium."
  }
}

variable "base" {
  type        = string
  description = "AWS base: trusty (Ubuntu 14.04, Python 2.7 Disco, IMDSv1) or debian-12 (Debian 12, OTP 25, Python 3.11 with our patches, IMDSv2 required). The wrapper resolves the source AMI, the login user and imdsv2_support from it."
  default     = "trusty"

  validation {
    condition     = contains(["trusty", "debian-12"], var.base)
    error_message = "The base must be trusty or debian-12."
  }
}

variable "imdsv2_support" {
  type        = string
  description = "yes when the source AMI's cloud-init speaks IMDSv2 (session tokens): the AMIs are tagged imagebake:imdsv2=<this> and the launcher then sets HttpTokens=required. invoke bake always passes it, decided from the base when not given: yes for Ubuntu >= 20.04, Debian >= 11 or ImdsSupport v2.0; no for the default Ubuntu 14.04 base (cloud-init 0.7.5 predates IMDSv2) and other older bases."
  default     = "yes"

  validation {
    condition     = contains(["yes", "no"], var.imdsv2_support)
    error_message = "The imdsv2_support must be yes or no."
  }
}

variable "ami_regions" {
  type        = string
  description = "Regions to copy both AMIs to, comma-separated (e.g. eu-west-1,us-east-1; the build region itself is skipped). The copies carry the same tags, snapshot tags and encryption; `invoke images`/`prune` see and remove them."
  default     = ""

  validation {
    condition     = trim(var.ami_regions, "abcdefghijklmnopqrstuvwxyz0123456789-,") == "" && length([for r in compact(split(",", var.ami_regions)) : r if length(split("-", r)) < 3]) == 0
    error_message = "The ami_regions must be region names separated by commas, e.g. eu-west-1,us-east-1."
  }
}

variable "ami_deprecate_after" {
  type        = string
  description = "Deprecate the AMIs (and every copy) this many days after the bake, e.g. 90d (empty: never). Set by imagebake after Packer with EC2's EnableImageDeprecation, so it works on Packer 1.6.6 too."
  default     = ""

  validation {
    condition     = var.ami_deprecate_after == "" || (length(var.ami_deprecate_after) >= 2 && length(var.ami_deprecate_after) <= 5 && substr(var.ami_deprecate_after, -1, 1) == "d" && trim(substr(var.ami_deprecate_after, 0, length(var.ami_deprecate_after) - 1), "0123456789") == "")
    error_message = "The ami_deprecate_after must be empty or a number of days such as 90d."
  }
}

variable "ssh_username" {
  type        = string
  description = "Login user of the source AMI."
  default     = "ubuntu"
}

variable "ssh_source_cidr" {
  type        = string
  description = "Who may SSH to the instance an amazon-ebs build bakes: the builder's own address as a CIDR (Packer's temporary security group; without it Packer opens 0.0.0.0/0). invoke bake fills it with your public address/32 (checkip.amazonaws.com); pass it when that is not the address the instance sees, e.g. 10.0.0.0/16 from inside the VPC. Empty: an amazon-ebs build refuses (Packer rejects the empty CIDR)."
  default     = ""
}

variable "subnet_id" {
  type        = string
  description = "Subnet to build in (empty: the default VPC)."
  default     = ""

  validation {
    condition     = var.subnet_id == "" || (substr(var.subnet_id, 0, 7) == "subnet-" && length(var.subnet_id) > 7 && trim(substr(var.subnet_id, 7, 17), "0123456789abcdef") == "")
    error_message = "The subnet_id must be empty or a subnet id such as subnet-0123abcd."
  }
}

variable "encrypt_boot" {
  type        = bool
  description = "Encrypt the AMI's root snapshot (with the account's default EBS key)."
  default     = false
}

variable "ami_name_prefix" {
  type        = string
  description = "First part of every AMI name."
  default     = "imagebake"

  validation {
    condition     = var.ami_name_prefix != "" && length(var.ami_name_prefix) <= 40 && trim(var.ami_name_prefix, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789()./_-") == ""
    error_message = "The ami_name_prefix must be 1-40 characters allowed in AMI names."
  }
}

variable "manifest_path" {
  type        = string
  description = "Where the manifest post-processor writes the list of artifacts."
  default     = "build/packer-manifest.json"
}

variable "agent_dir" {
  type        = string
  description = "Directory of the first-boot agent package uploaded into the image."
  default     = "imagebake/agent"
}
