"""TLS to the segment store: a self-signed CA and server certificates made with the openssl
command line; valid connections by host name and by IP address, a wrong host name, an IP
address the certificate does not name, an untrusted CA, and a missing CA file, each a typed
error; hostname verification turned off; TLS through the pool."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import uuid
from pathlib import Path

import pytest

from pravega_wire import commands as C
from pravega_wire.connection import ConnectionConfig, open_connection
from pravega_wire.errors import ConnectionFailedError
from pravega_wire.flow import pack_request_id
from pravega_wire.pool import ClientConfig, ConnectionPool
from test_connection_support import Recorder, ScriptedServer, wait_until, wire  # noqa: F401

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None,
                                reason="the openssl command is needed to make test certificates")


def _openssl(*args, cwd):
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=60)


def _make_ca(directory: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
             "-subj", f"/CN=pravega-wire test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-addext", "subjectKeyIdentifier=hash", cwd=directory)


def _make_server_cert(directory: Path, name: str, ca: str, san: str) -> None:
    (directory / f"{name}.ext").write_text(
        f"subjectAltName={san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
        "extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", "/CN=segment store",
             cwd=directory)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
             cwd=directory)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """ca.pem (trusted) and rogue.pem (another CA); server certificates: ``both`` names
    localhost and 127.0.0.1, ``name`` only localhost, ``other`` only other.example, ``rogue``
    names both but is signed by the rogue CA."""
    d = tmp_path_factory.mktemp("tls")
    _make_ca(d, "ca")
    _make_ca(d, "rogue-ca")
    _make_server_cert(d, "both", "ca", "DNS:localhost,IP:127.0.0.1")
    _make_server_cert(d, "name", "ca", "DNS:localhost")
    _make_server_cert(d, "other", "ca", "DNS:other.example")
    _make_server_cert(d, "rogue", "rogue-ca", "DNS:localhost,IP:127.0.0.1")
    return d


def server_context(certs: Path, name: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs / f"{name}.pem", certs / f"{name}.key")
    return context


async def exchange(conn) -> None:
    rec = Recorder()
    flow = conn.add_flow(1, rec)
    flow.send(C.GetSegmentAttribute(pack_request_id(1, 1), "s", uuid.UUID(int=1), ""))
    await wait_until(lambda: rec.of_type(C.SegmentAttribute), what="a reply over TLS")
    assert rec.replies[0] == C.Hello(17, 5)


@pytest.mark.asyncio
@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_a_certificate_naming_the_host_or_its_ip_address_is_accepted(wire, certs, host):
    async with ScriptedServer(wire, ssl=server_context(certs, "both")) as server:
        config = ConnectionConfig(tls=True, trust_store=str(certs / "ca.pem"))
        conn = await open_connection((host, server.endpoint[1]), config, codec=wire)
        try:
            assert conn._transport.get_extra_info("peercert") is not None
            await exchange(conn)
        finally:
            conn.close()
            await conn.wait_closed()


@pytest.mark.asyncio
@pytest.mark.parametrize("cert,host", [("other", "localhost"), ("name", "127.0.0.1")],
                         ids=["wrong-hostname", "ip-not-in-certificate"])
async def test_a_certificate_for_another_name_is_refused_unless_verification_is_off(
        wire, certs, cert, host):
    async with ScriptedServer(wire, ssl=server_context(certs, cert)) as server:
        endpoint = (host, server.endpoint[1])
        config = ConnectionConfig(tls=True, trust_store=str(certs / "ca.pem"))
        with pytest.raises(ConnectionFailedError) as info:
            await open_connection(endpoint, config, codec=wire)
        assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
        assert "match" in str(info.value) or "mismatch" in str(info.value)
        relaxed = ConnectionConfig(tls=True, trust_store=str(certs / "ca.pem"),
                                   validate_hostname=False)
        conn = await open_connection(endpoint, relaxed, codec=wire)
        await exchange(conn)
        conn.close()


@pytest.mark.asyncio
async def test_a_certificate_from_an_untrusted_ca_is_refused_even_without_hostname_checks(
        wire, certs):
    async with ScriptedServer(wire, ssl=server_context(certs, "rogue")) as server:
        for validate in (True, False):
            config = ConnectionConfig(tls=True, trust_store=str(certs / "ca.pem"),
                                      validate_hostname=validate)
            with pytest.raises(ConnectionFailedError) as info:
                await open_connection(server.endpoint, config, codec=wire)
            assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)


@pytest.mark.asyncio
async def test_a_missing_ca_file_is_a_typed_error_before_any_socket_opens(wire, certs,
                                                                          tmp_path):
    async with ScriptedServer(wire, ssl=server_context(certs, "both")) as server:
        config = ConnectionConfig(tls=True, trust_store=str(tmp_path / "missing.pem"))
        with pytest.raises(ConnectionFailedError, match="trust store") as info:
            await open_connection(server.endpoint, config, codec=wire)
        assert isinstance(info.value.__cause__, FileNotFoundError)
        garbage = tmp_path / "garbage.pem"
        garbage.write_text("not a certificate\n")
        with pytest.raises(ConnectionFailedError, match="trust store"):
            await open_connection(server.endpoint, ConnectionConfig(
                tls=True, trust_store=str(garbage)), codec=wire)
        assert server.connections == []


@pytest.mark.asyncio
async def test_a_plain_client_cannot_talk_to_a_tls_server(wire, certs):
    async with ScriptedServer(wire, ssl=server_context(certs, "both")) as server:
        with pytest.raises(ConnectionFailedError):
            await open_connection(server.endpoint, ConnectionConfig(connect_timeout=2),
                                  codec=wire)


@pytest.mark.asyncio
async def test_the_pool_and_a_caller_supplied_context_speak_tls(wire, certs):
    async with ScriptedServer(wire, ssl=server_context(certs, "both")) as server:
        context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        config = ClientConfig(ssl_context=context)
        assert config.tls_enabled and config.create_ssl_context() is context
        async with ConnectionPool(config, codec=wire) as pool:
            rec = Recorder()
            flow = await pool.open_flow(server.endpoint, rec)
            flow.send(C.GetSegmentAttribute(pack_request_id(flow.flow_id, 1), "s",
                                            uuid.UUID(int=1), ""))
            await wait_until(lambda: rec.of_type(C.SegmentAttribute))
            dedicated_rec = Recorder()
            await pool.open_dedicated_flow(server.endpoint, dedicated_rec)
            assert dedicated_rec.replies == [C.Hello(17, 5)]


@pytest.mark.asyncio
async def test_a_bundle_file_or_a_hashed_directory_of_cas_is_a_trust_store(wire, certs,
                                                                           tmp_path):
    bundle = tmp_path / "bundle.pem"
    bundle.write_text((certs / "rogue-ca.pem").read_text() + (certs / "ca.pem").read_text())
    directory = tmp_path / "cas"
    directory.mkdir()
    shutil.copy(certs / "ca.pem", directory / "ca.pem")
    _openssl("rehash", str(directory), cwd=tmp_path)
    for cert in ("both", "rogue"):
        async with ScriptedServer(wire, ssl=server_context(certs, cert)) as server:
            conn = await open_connection(server.endpoint, ConnectionConfig(
                tls=True, trust_store=str(bundle)), codec=wire)
            await exchange(conn)
            conn.close()
            if cert == "both":
                conn = await open_connection(server.endpoint, ConnectionConfig(
                    tls=True, trust_store=directory), codec=wire)
                await exchange(conn)
                conn.close()
            else:
                with pytest.raises(ConnectionFailedError):
                    await open_connection(server.endpoint, ConnectionConfig(
                        tls=True, trust_store=directory), codec=wire)
