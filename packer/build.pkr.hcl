# One build: master and node bake in parallel, each from its own source.

build {
  sources = [
    "source.docker.master",
    "source.docker.node",
    "source.amazon-ebs.master",
    "source.amazon-ebs.node",
    "source.qemu.master",
    "source.qemu.node",
  ]

  provisioner "shell" {
    inline = ["mkdir -p /tmp/imagebake/agent /tmp/imagebake/disco"]
  }

  provisioner "file" {
    source      = "${path.root}/../provision"
    destination = "/tmp/imagebake/"
  }

  # Vendored upstream archives and their lock (checked against each other in 30-disco.sh);
  # our patches come with provision/ (provision/disco/patches/).
  provisioner "file" {
    source      = "${path.root}/../vendor"
    destination = "/tmp/imagebake/"
  }

  provisioner "file" {
    source      = local.disco_lock
    destination = "/tmp/imagebake/vendor/disco.lock"
  }

  provisioner "file" {
    source      = "${var.agent_dir}/"
    destination = "/tmp/imagebake/agent"
  }

  provisioner "file" {
    source      = local.disco_upload
    destination = "/tmp/imagebake/disco/source.tar"
  }

  provisioner "shell" {
    # Root everywhere: docker runs as root; EC2 logs in as ubuntu and uses sudo.
    execute_command = "chmod +x {{ .Path }}; if [ \"$(id -u)\" = 0 ]; then env {{ .Vars }} {{ .Path }}; else sudo -E env {{ .Vars }} {{ .Path }}; fi"
    environment_vars = [
      "IMAGEBAKE_ROLE=${source.name}",
      "IMAGEBAKE_TARGET=${source.type}",
      "IMAGEBAKE_DIR=/tmp/imagebake",
      "DISCO_SOURCE=${local.disco_env}",
      "DISCO_REF=${var.disco_ref}",
      "DEBIAN_FRONTEND=noninteractive",
    ]
    scripts = [
      "${path.root}/../provision/10-wait-cloud-init.sh",
      "${path.root}/../provision/20-packages.sh",
      "${path.root}/../provision/30-disco.sh",
      "${path.root}/../provision/40-network.sh",
      "${path.root}/../provision/50-agent.sh",
      "${path.root}/../provision/90-cleanup.sh",
    ]
  }

  post-processor "docker-tag" {
    only       = ["docker.master"]
    repository = "imagebake/master"
    tags       = [local.hash12["master"], "latest"]
  }

  post-processor "docker-tag" {
    only       = ["docker.node"]
    repository = "imagebake/node"
    tags       = [local.hash12["node"], "latest"]
  }

  # qemu: the script that removes the throw-away bake login at shutdown.
  provisioner "file" {
    only        = ["qemu.master", "qemu.node"]
    source      = "${path.root}/../imagebake/bake/qemu-finish-bake.sh"
    destination = "/var/tmp/imagebake-finish-bake.sh"
  }

  post-processor "manifest" {
    output     = var.manifest_path
    strip_path = false
    custom_data = {
      content_hash = source.name == "master" ? var.content_hash["master"] : var.content_hash["node"]
      disco_source = local.disco_label
      built_at     = local.built_at
      accelerator  = source.type == "qemu" ? var.qemu_accelerator : ""
      base         = source.type == "qemu" ? var.qemu_base : ""
    }
  }
}
