"""AWS pieces of the EC2 target: sessions, inputs, network, instances, user data."""
