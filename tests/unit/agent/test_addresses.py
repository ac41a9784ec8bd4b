"""addresses.py: the master learns its own address (IMDS local-ipv4, the route out), never
loopback, and takes the spec's only when it is its own."""

import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from imagebake.agent import source, spec
from imagebake.agent.loop import Agent

from .helpers import COOKIE, TOKEN, free_port, write_spec


class MetadataServer:
    def __init__(self, answers):
        outer = self
        self.requests = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, body=b""):
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PUT(self):  # noqa: N802
                outer.requests.append(("PUT", self.path))
                self._send(200, b"TOKEN")

            def do_GET(self):  # noqa: N802
                outer.requests.append(("GET", self.path))
                if self.headers.get("X-aws-ec2-metadata-token") != "TOKEN":
                    return self._send(401)
                if self.path in answers:
                    return self._send(200, answers[self.path])
                self._send(404)

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        thread = threading.Thread(target=self.server.serve_forever, args=(0.05,))
        thread.daemon = True
        thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _aws_master_spec():
    """The AWS launcher's master spec: master.address is null."""
    return spec.make_spec("demo", "master", master_address=None, hostname="master",
                          token=TOKEN, cookie=COOKIE, expected_nodes=1, join_port=free_port())


def test_master_from_cloud_init_takes_imds_local_ipv4(agent_ctx):
    address = "10.1.2.3"
    imds = MetadataServer({"/latest/meta-data/local-ipv4": address.encode()})
    try:
        ctx = agent_ctx(imds_url=imds.url)
        path = ctx.path(source.CLOUD_INIT)
        os.makedirs(os.path.dirname(path))
        with open(path, "w") as handle:
            handle.write(spec.dumps(_aws_master_spec()))
        agent = Agent(ctx, bind_address="127.0.0.1")
        agent.state.run_phase("spec", agent.phase_spec)
        agent.state.run_phase("keys", agent.phase_keys)
        agent.state.run_phase("serve", agent.phase_serve)
        try:
            assert agent.master.addresses == [address]
        finally:
            agent.stop()
    finally:
        imds.close()


def _own_address():
    """This host's address toward the world (the route trick), or skip."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.connect(("192.0.2.1", 9))
        address = sock.getsockname()[0]
    except OSError:
        pytest.skip("no route out here")
    finally:
        sock.close()
    if address.startswith("127."):
        pytest.skip("no non-loopback address here")
    return address


def test_master_without_imds_uses_its_route_address_never_loopback(agent_ctx):
    own = _own_address()
    ctx = agent_ctx()
    write_spec(ctx, _aws_master_spec())
    agent = Agent(ctx, bind_address="127.0.0.1")
    agent.state.run_phase("spec", agent.phase_spec)
    agent.state.run_phase("keys", agent.phase_keys)
    agent.state.run_phase("serve", agent.phase_serve)
    try:
        assert agent.master.addresses == [own]
    finally:
        agent.stop()


@pytest.mark.parametrize("claimed", ["127.0.0.1", "192.0.2.77"])
def test_spec_master_address_must_be_one_of_ours(claimed):
    from imagebake.agent.addresses import master_own_addresses
    with pytest.raises(Exception, match="not one of this machine's addresses|loopback"):
        master_own_addresses(dict(_aws_master_spec(),
                                  master={"address": claimed, "name": "master",
                                          "join_port": 8990}), ctx=None)


def test_spec_master_address_of_ours_is_taken():
    from imagebake.agent.addresses import master_own_addresses
    own = _own_address()
    the_spec = _aws_master_spec()
    the_spec["master"]["address"] = own
    assert master_own_addresses(the_spec, ctx=None) == [own]
