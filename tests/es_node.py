"""A real single-node Elasticsearch 8.19 for the integration suite (no Docker, no mocks).

The distribution is Elastic's `integ-test-zip` from Maven Central (server + netty + x-pack core and
security; no Painless, no ML, no rrf retriever), fetched once with `mvn dependency:copy` and unpacked
under `~/.cache/ret2-plugin/elasticsearch/<version>/`. Each test session starts its own node on a free
loopback port with data, logs and config in a temp dir, security ON (bootstrap password in the keystore,
HTTP without TLS), and removes everything when the session ends.

Elasticsearch refuses to run as root: as root we run it as the system user `ret2es` (created if
missing) from a hard-linked copy of the distribution in the temp dir (root's home is not traversable
for other users). Set `RET2_ES_URL` (+ `RET2_ES_USERNAME` / `RET2_ES_PASSWORD`, optional
`RET2_ES_READER=user:password` for a read-only user) to use a running node instead.

    from tests.es_node import es_node  # noqa: F401   (in tests/conftest.py)
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ES_VERSION = os.environ.get("RET2_ES_VERSION", "8.19.21")  # newest 8.19.x on Maven Central (Nov 2026)
ARTIFACT = "org.elasticsearch.distribution.integ-test-zip:elasticsearch:{version}:zip"
JAVA_HOME = os.environ.get("RET2_ES_JAVA_HOME", "/usr/lib/jvm/java-17-openjdk-amd64")
CACHE_ROOT = Path(os.environ.get("RET2_ES_CACHE", Path.home() / ".cache" / "ret2-plugin" / "elasticsearch"))
RUN_AS = "ret2es"
START_TIMEOUT_S = 120.0
PASSWORD = "ret2-test-password"  # a throwaway node on 127.0.0.1, gone at the end of the session
READER = ("ret2_reader", "ret2-reader-password")  # file-realm user who may only read `ret2-test-*`
READER_ROLE = """ret2_reader:
  indices:
    - names: ["ret2-test-*"]
      privileges: ["read", "view_index_metadata", "monitor"]
"""


class ESNodeError(RuntimeError):
    """The test node could not be installed or started; the message says why (and shows the log)."""


@dataclass
class ESNode:
    """A running node: where it listens and how to log in."""

    url: str
    username: str = "elastic"
    password: str = field(default=PASSWORD, repr=False)
    reader: tuple[str, str] | None = field(default=READER, repr=False)
    version: str = ES_VERSION
    workdir: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    command: list[str] = field(default_factory=list, repr=False)  # how to start it again (restart)

    @property
    def basic_auth(self) -> tuple[str, str]:
        return (self.username, self.password)

    def client(self, **kwargs: Any) -> Any:
        """An `elasticsearch.Elasticsearch` client logged in as the superuser (override with kwargs)."""
        from elasticsearch import Elasticsearch

        if "api_key" not in kwargs:
            kwargs.setdefault("basic_auth", self.basic_auth)
        kwargs.setdefault("request_timeout", 60)
        return Elasticsearch(self.url, **kwargs)

    def backend_options(self) -> dict[str, Any]:
        """Connection options for `ElasticsearchBackend.open`."""
        return {"hosts": self.url, "basic_auth": self.basic_auth}

    def kill(self) -> None:
        """SIGKILL every process of the node (a crash: no shutdown, no flush) and wait until they are gone."""
        assert self.process is not None, "only a node this session started can be killed"
        os.killpg(self.process.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _group_alive(self.process.pid) and time.monotonic() < deadline:
            self.process.poll()
            time.sleep(0.1)
        self.process.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP the node's processes: connections are accepted by the kernel, nothing is answered."""
        assert self.process is not None, "only a node this session started can be paused"
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGCONT)

    def restart(self, timeout: float = START_TIMEOUT_S, wait: bool = True) -> None:
        """Start the (killed) node again on the same data, ports and credentials; wait for yellow health."""
        assert self.workdir is not None and self.command, "only a node this session started can be restarted"
        if self.process is not None and self.process.poll() is None:
            self.kill()
        _launch(self)
        if wait:
            _wait_healthy(self, timeout)

    def stop(self) -> None:
        """Stop the server (SIGTERM to its process group, SIGKILL after 30 s), wait until every process
        of the group is gone, then delete the temp dir."""
        if self.process is not None:
            pgid = self.process.pid
            if _group_alive(pgid):
                os.killpg(pgid, signal.SIGCONT)  # a paused node would not see the SIGTERM
                os.killpg(pgid, signal.SIGTERM)
                deadline = time.monotonic() + 30
                while _group_alive(pgid) and time.monotonic() < deadline:
                    self.process.poll()  # reap runuser as soon as it exits
                    time.sleep(0.2)
                if _group_alive(pgid):
                    os.killpg(pgid, signal.SIGKILL)
            self.process.wait(timeout=10)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user (we run the server as ret2es)
        return True
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_distribution(version: str = ES_VERSION) -> Path:
    """Path of the unpacked distribution, downloading it with Maven on first use (atomic rename)."""
    target = CACHE_ROOT / version
    if (target / "bin" / "elasticsearch").exists():
        return target
    if shutil.which("mvn") is None:
        raise ESNodeError("Elasticsearch test node: `mvn` is not installed (apt-get install maven)")
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE_ROOT, prefix=f".dl-{version}-") as tmp:
        artifact = ARTIFACT.format(version=version)
        cmd = ["mvn", "-B", "-q", "dependency:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={tmp}"]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
        zips = list(Path(tmp).glob("*.zip"))
        if done.returncode != 0 or not zips:
            raise ESNodeError(
                f"could not fetch {artifact} from Maven Central:\n{done.stdout[-3000:]}{done.stderr[-2000:]}"
            )
        unpacked = Path(tmp) / "unpacked"
        shutil.unpack_archive(zips[0], unpacked)
        (home,) = [p for p in unpacked.iterdir() if p.is_dir()]
        for script in (home / "bin").iterdir():  # zipfile drops the exec bits
            script.chmod(0o755)
        for java_home_bin in home.glob("jdk/bin/*"):
            java_home_bin.chmod(0o755)
        try:
            os.replace(home, target)
        except OSError:  # another process won the race
            if not (target / "bin" / "elasticsearch").exists():
                raise
    return target


def _ensure_user() -> None:
    try:
        subprocess.run(["id", "-u", RUN_AS], check=True, capture_output=True)
    except subprocess.CalledProcessError as missing:
        done = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", RUN_AS],
            capture_output=True,
            text=True,
        )
        if done.returncode not in (0, 9):  # 9: created meanwhile by a parallel session
            raise ESNodeError(f"could not create user {RUN_AS!r} to run Elasticsearch: {done.stderr}") from missing


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link copy (fast, no extra disk); plain copy across file systems."""
    try:
        shutil.copytree(src, dst, copy_function=os.link, symlinks=True)
    except OSError:
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst, symlinks=True)


def _log_tail(workdir: Path, chars: int = 6000) -> str:
    parts = []
    for log in [workdir / "stdout.log", *sorted((workdir / "logs").glob("*.log"))]:
        if log.exists() and log.stat().st_size:
            parts.append(f"--- {log.name} ---\n{log.read_text(errors='replace')[-chars:]}")
    return "\n".join(parts) or "(no log written)"


def _health(url: str, password: str, status: str = "yellow") -> str | None:
    token = b64encode(f"elastic:{password}".encode()).decode()
    request = urllib.request.Request(
        f"{url}/_cluster/health?wait_for_status={status}&timeout=5s", headers={"Authorization": f"Basic {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read().decode()
            return body if '"timed_out":false' in body else None
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return None


AUTH_FILES = ("elasticsearch.keystore", "users", "users_roles")


def _install_auth_files(version: str, home: Path, conf: Path, run: list[str], workdir: Path) -> None:
    """Keystore (bootstrap password) + file-realm users, made once with Elastic's CLI tools (two JVM
    starts, ~10 s) and cached beside the distribution; later nodes just copy them."""
    tag = hashlib.sha256(f"{PASSWORD}|{READER[0]}|{READER[1]}".encode()).hexdigest()[:10]
    cached = CACHE_ROOT / f"{version}-auth-{tag}"
    if not all((cached / name).exists() for name in AUTH_FILES):
        steps = (
            (
                "keystore add",
                [*run, str(home / "bin" / "elasticsearch-keystore"), "add", "-f", "-x", "bootstrap.password"],
                PASSWORD,
            ),
            (
                "users useradd",
                [
                    *run,
                    str(home / "bin" / "elasticsearch-users"),
                    "useradd",
                    READER[0],
                    "-p",
                    READER[1],
                    "-r",
                    "ret2_reader",
                ],
                None,
            ),
        )
        for what, cmd, stdin in steps:
            done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, cwd=workdir, timeout=120)
            if done.returncode != 0:
                raise ESNodeError(f"elasticsearch-{what} failed: {done.stdout}{done.stderr}")
        staging = Path(tempfile.mkdtemp(dir=CACHE_ROOT, prefix=".auth-"))
        for name in AUTH_FILES:
            shutil.copyfile(conf / name, staging / name)
        try:
            os.replace(staging, cached)
        except OSError:  # another session cached them first
            shutil.rmtree(staging, ignore_errors=True)
        return
    for name in AUTH_FILES:
        shutil.copyfile(cached / name, conf / name)
        if os.geteuid() == 0:
            shutil.chown(conf / name, RUN_AS, RUN_AS)
        (conf / name).chmod(0o660)


def start_node(
    version: str = ES_VERSION,
    timeout: float = START_TIMEOUT_S,
    *,
    settings: dict[str, Any] | None = None,
    security: bool = True,
    launch: bool = True,
) -> ESNode:
    """Install if needed, start a single node with security on, wait for yellow health. `settings` override
    elasticsearch.yml (None removes a key: e.g. `discovery.type` for a cluster member); `security=False`
    runs without authentication; `launch=False` only prepares the node (start it with `node.restart()`)."""
    java = Path(JAVA_HOME) / "bin" / "java"
    if not java.exists():
        raise ESNodeError(
            f"Elasticsearch test node needs Java 17 at {JAVA_HOME} (apt-get install openjdk-17-jdk-headless)"
        )
    dist = ensure_distribution(version)
    as_root = os.geteuid() == 0
    workdir = Path(tempfile.mkdtemp(prefix="ret2-es-"))
    workdir.chmod(0o755)
    if as_root:
        _ensure_user()
        home = workdir / "home"
        _link_tree(dist, home)
    else:
        home = dist
    conf = workdir / "config"
    shutil.copytree(dist / "config", conf)
    for sub in ("data", "logs", "tmp"):
        (workdir / sub).mkdir()
    port, transport_port = _free_port(), _free_port()
    config: dict[str, Any] = {
        "cluster.name": f"ret2-test-{port}",
        "node.name": "ret2-test",
        "discovery.type": "single-node",
        "network.host": "127.0.0.1",
        "http.port": port,
        "transport.port": transport_port,
        "path.data": workdir / "data",
        "path.logs": workdir / "logs",
        "xpack.security.enabled": "true",
        "xpack.security.http.ssl.enabled": "false",
        "xpack.security.transport.ssl.enabled": "false",
        "cluster.routing.allocation.disk.threshold_enabled": "false",
        "action.destructive_requires_name": "false",
    }
    if not security:
        config["xpack.security.enabled"] = "false"
    config.update(settings or {})
    port = int(config["http.port"])
    (conf / "elasticsearch.yml").write_text("".join(f"{k}: {v}\n" for k, v in config.items() if v is not None))
    (conf / "roles.yml").write_text(READER_ROLE)
    env = {
        "PATH": f"{JAVA_HOME}/bin:/usr/local/bin:/usr/bin:/bin",
        "ES_JAVA_HOME": JAVA_HOME,
        "ES_PATH_CONF": str(conf),
        "ES_TMPDIR": str(workdir / "tmp"),
        "ES_JAVA_OPTS": "-Xms512m -Xmx512m",
        "HOME": str(workdir),
        "LANG": "C.UTF-8",
    }
    prefix = ["runuser", "-u", RUN_AS, "--"] if as_root else []
    if as_root:
        subprocess.run(
            ["chown", "-R", f"{RUN_AS}:", str(conf), *(str(workdir / s) for s in ("data", "logs", "tmp"))], check=True
        )
    env_args = ["env", "-i", *(f"{k}={v}" for k, v in env.items())]
    try:
        if security:
            _install_auth_files(version, home, conf, [*prefix, *env_args], workdir)
    except ESNodeError:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    node = ESNode(
        url=f"http://127.0.0.1:{port}",
        version=version,
        workdir=workdir,
        command=[*prefix, *env_args, str(home / "bin" / "elasticsearch")],
    )
    atexit.register(node.stop)  # also on an interrupted session
    if launch:
        _launch(node)
        _wait_healthy(node, timeout)
    return node


def _launch(node: ESNode) -> None:
    assert node.workdir is not None
    with open(node.workdir / "stdout.log", "ab") as out:
        node.process = subprocess.Popen(
            node.command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=node.workdir,
            start_new_session=True,
        )


def _wait_healthy(node: ESNode, timeout: float, health: str = "yellow") -> None:
    """Wait for the cluster health `health`; on failure stop the node and raise ESNodeError with its log."""
    assert node.process is not None and node.workdir is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node.process.poll() is not None:
            tail = _log_tail(node.workdir)
            node.stop()
            raise ESNodeError(f"Elasticsearch {node.version} exited with code {node.process.returncode}:\n{tail}")
        if _health(node.url, node.password, health):
            return
        time.sleep(1.0)
    tail = _log_tail(node.workdir)
    node.stop()
    raise ESNodeError(f"Elasticsearch {node.version} did not become {health} within {timeout:.0f} s:\n{tail}")


@pytest.fixture(scope="session")
def es_node() -> Iterator[ESNode]:
    """One node for the whole session (or the node at `RET2_ES_URL`)."""
    url = os.environ.get("RET2_ES_URL")
    if url:
        yield ESNode(
            url=url.rstrip("/"),
            username=os.environ.get("RET2_ES_USERNAME", "elastic"),
            password=os.environ.get("RET2_ES_PASSWORD", PASSWORD),
            reader=tuple(os.environ["RET2_ES_READER"].split(":", 1)) if os.environ.get("RET2_ES_READER") else None,  # type: ignore[arg-type]
        )
        return
    try:
        node = start_node()
    except ESNodeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield node
    finally:
        node.stop()


if __name__ == "__main__":  # `python -m tests.es_node`: a node for manual work, until Ctrl-C / SIGTERM
    import sys

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    running = start_node()
    print(
        f"export ELASTICSEARCH_URL={running.url} ELASTICSEARCH_USERNAME={running.username} "
        f"ELASTICSEARCH_PASSWORD={running.password}",
        flush=True,
    )
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
