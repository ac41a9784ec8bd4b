# Names and tags, derived once and used by every source.

locals {
  roles      = ["master", "node"]
  built_at   = timestamp()
  stamp      = formatdate("YYYYMMDDhhmmss", local.built_at)
  disco_kind = contains(["vendored", "none", "offline"], var.disco_source) ? var.disco_source : (substr(var.disco_source, 0, 1) == "/" ? (substr(var.disco_source, -11, 11) == "/disco.lock" ? "vendored" : "tarball") : "git")
}

locals {
  # What a label or tag says about Disco: "none", "offline", the tarball's file name, URL@ref or vendored@ref.
  disco_label = local.disco_kind == "git" ? "${var.disco_source}@${var.disco_ref}" : (local.disco_kind == "tarball" ? basename(var.disco_source) : (local.disco_kind == "vendored" ? "vendored@${var.disco_ref}" : var.disco_source))
  # What 30-disco.sh is told (a lock path is the vendored kind with that lock).
  disco_env = local.disco_kind == "vendored" ? "vendored" : var.disco_source
  # The lock uploaded over vendor/disco.lock: the repository's, or the one disco_source names.
  disco_lock = local.disco_kind == "vendored" && var.disco_source != "vendored" ? var.disco_source : "${path.root}/../vendor/disco.lock"
  # The file provisioner always needs something to upload.
  disco_upload = local.disco_kind == "tarball" ? var.disco_source : "${path.root}/files/no-disco-tarball"
  aws_base     = var.source_ami == "" ? "unresolved" : var.source_ami
  hash12       = { for r in local.roles : r => substr(var.content_hash[r], 0, 12) }
}

locals {
  ami_name = { for r in local.roles : r => "${var.ami_name_prefix}-${r}-${local.hash12[r]}-${local.stamp}" }
}

locals {
  aws_tags = { for r in local.roles : r => {
    "Name"                   = local.ami_name[r]
    "imagebake:role"         = r
    "imagebake:disco-ref"    = local.disco_label
    "imagebake:base"         = local.aws_base
    "imagebake:content-hash" = var.content_hash[r]
    "imagebake:built-at"     = local.built_at
  } }

  docker_changes = { for r in local.roles : r => [
    "LABEL imagebake.role=${r}",
    "LABEL imagebake.content-hash=${var.content_hash[r]}",
    "LABEL imagebake.disco-source=${local.disco_label}",
    "LABEL imagebake.base=${var.docker_base}",
    "LABEL imagebake.built-at=${local.built_at}",
    "ENV LANG=C.UTF-8",
    "WORKDIR /",
    "EXPOSE 22 53/udp 53/tcp 4369 8989 8990",
    "ENTRYPOINT [\"/usr/local/sbin/imagebake-agent\", \"run\"]",
    "CMD []",
  ] }
}
