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
  tags            = local.aws_tags["master"]
  snapshot_tags   = local.aws_tags["master"]
  run_tags        = { Name = "packer imagebake master" }
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
  tags            = local.aws_tags["node"]
  snapshot_tags   = local.aws_tags["node"]
  run_tags        = { Name = "packer imagebake node" }
}
