# One source per role and target; the wrapper picks with -only=<type>.<role>.

source "docker" "master" {
  image   = var.docker_base
  pull    = false
  commit  = true
  changes = local.docker_changes["master"]
}

source "docker" "node" {
  image   = var.docker_base
  pull    = false
  commit  = true
  changes = local.docker_changes["node"]
}

source "amazon-ebs" "master" {
  region          = var.aws_region
  source_ami      = var.source_ami
  instance_type   = var.instance_type
  ssh_username    = var.ssh_username
  subnet_id       = var.subnet_id
  ami_name        = local.ami_name["master"]
  ami_description = "imagebake Disco master ${local.hash12["master"]}"
  encrypt_boot    = var.encrypt_boot
  ami_regions     = [for r in compact(split(",", var.ami_regions)) : r if r != var.aws_region]
  tags            = merge(local.aws_tags["master"], { "imagebake:imdsv2" = var.imdsv2_support })
  snapshot_tags   = merge(local.aws_tags["master"], { "imagebake:imdsv2" = var.imdsv2_support })
  run_tags        = { Name = "packer imagebake master", "imagebake:imdsv2" = var.imdsv2_support }

  # SSH from the builder's address only (Packer's default is 0.0.0.0/0; 1.6.6 has no
  # temporary_security_group_source_public_ip): invoke bake fills ssh_source_cidr
  temporary_security_group_source_cidrs = [var.ssh_source_cidr]
}

source "amazon-ebs" "node" {
  region          = var.aws_region
  source_ami      = var.source_ami
  instance_type   = var.instance_type
  ssh_username    = var.ssh_username
  subnet_id       = var.subnet_id
  ami_name        = local.ami_name["node"]
  ami_description = "imagebake Disco node ${local.hash12["node"]}"
  encrypt_boot    = var.encrypt_boot
  ami_regions     = [for r in compact(split(",", var.ami_regions)) : r if r != var.aws_region]
  tags            = merge(local.aws_tags["node"], { "imagebake:imdsv2" = var.imdsv2_support })
  snapshot_tags   = merge(local.aws_tags["node"], { "imagebake:imdsv2" = var.imdsv2_support })
  run_tags        = { Name = "packer imagebake node", "imagebake:imdsv2" = var.imdsv2_support }

  # SSH from the builder's address only (Packer's default is 0.0.0.0/0; 1.6.6 has no
  # temporary_security_group_source_public_ip): invoke bake fills ssh_source_cidr
  temporary_security_group_source_cidrs = [var.ssh_source_cidr]
}
