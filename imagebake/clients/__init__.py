"""Provider clients both the bake and the targets use: AWS (boto3 sessions and error
text), the Docker CLI, QEMU (binary and accelerator) and cloud-init NoCloud seeds."""
