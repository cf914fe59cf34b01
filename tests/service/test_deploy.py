"""deploy/kubernetes (a kustomize base, rendered by `kubectl kustomize` through an overlay as a
user writes one) and deploy/compose.yaml (valid by the compose specification's schema), each
checked against the code's own settings so that neither drifts from it: the images the release
workflow pushes, probes on the app's own routes, only settings handler/ reads, ports where
those settings put them, the image's user, a read-only root with a writable temporary directory.
Then the web container's environment, as rendered, starts the real app on PostgreSQL and answers
its probes; the worker's passes the worker's own reader; and `runkeys serve` and `runkeys worker`
run with them on a read-only root with only /tmp writable, as the pods' securityContext has it."""

from __future__ import annotations

import copy
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import runkeys
from handler.app import create_app
from handler.config import ServiceConfig, metrics_bind
from handler.policy import parse_policy
from runkeys.connections import PREFIX as CONNECTION_PREFIX
from runkeys.errors import ConfigError
from runkeys_sandbox.launch import free_port, runkeys_serve
from tests.service.conftest import postgres_database
from tests.services import skip_or_fail

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "kubernetes"
COMPOSE = ROOT / "deploy" / "compose.yaml"
RELEASE = ROOT / ".github" / "workflows" / "release.yml"
Doc = dict[str, Any]


# --- what the code says ---------------------------------------------------------------------


def settings_handler_reads() -> set[str]:
    """Every RUNKEYS_* name in handler/'s source: the service's settings, found, not listed."""
    text = "".join(p.read_text() for p in sorted((ROOT / "handler").rglob("*.py")))
    return set(re.findall(r"\b(RUNKEYS_[A-Z0-9_]*[A-Z0-9])\b", text))


def known_setting(name: str) -> bool:
    return name in settings_handler_reads() or name.startswith(CONNECTION_PREFIX)


def image_user() -> str:
    """The service image's `USER uid:gid`."""
    users = re.findall(r"^USER (\d+:\d+)$", (ROOT / "service.Dockerfile").read_text(), re.M)
    assert len(users) == 1
    return str(users[0])


def released_service_image() -> tuple[str, set[str]]:
    """The name the release workflow pushes service.Dockerfile under, and the tags it gives
    a release (semver patterns of docker/metadata-action) for version 1.2.3."""
    job = yaml.safe_load(RELEASE.read_text())["jobs"]["images"]
    matrix = job["strategy"]["matrix"]["include"]
    [entry] = [e for e in matrix if e["dockerfile"] == "service.Dockerfile"]
    [meta] = [s for s in job["steps"] if "docker/metadata-action@" in s.get("uses", "")]
    version = {"version": "1.2.3", "major": "1", "minor": "2"}
    tags = set()
    for line in meta["with"]["tags"].splitlines():
        pattern = re.fullmatch(r"type=semver,pattern=(\S+)", line.strip())
        assert pattern is not None, line
        tags.add(re.sub(r"\{\{(\w+)\}\}", lambda m: version[m[1]], pattern[1]))
    return entry["image"], tags


def routes() -> dict[str, str]:
    """Path → endpoint of the app's GET routes, from the blueprints create_app registers."""
    from flask import Flask

    from handler.views import keys, leases, ops, webhook

    assert keys  # imported for its routes, which join leases' blueprint
    app = Flask("routes")
    for blueprint in (webhook.blueprint, leases.blueprint, ops.blueprint):
        app.register_blueprint(blueprint)
    return {
        rule.rule: rule.endpoint
        for rule in app.url_map.iter_rules()
        if "GET" in (rule.methods or ())
    }


def port_of(bind: str) -> int:
    return int(bind.rpartition(":")[2])


# --- rendering ------------------------------------------------------------------------------


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        skip_or_fail("kubectl is not installed (it renders deploy/kubernetes: kubectl kustomize)")
    assert found is not None
    return found


OVERLAY = """\
resources: [{base}]
images:
  - name: ghcr.io/owner/runkeys-service
    newName: ghcr.io/acme/runkeys-service
configMapGenerator:
  - name: runkeys
    behavior: merge
    literals: [RUNKEYS_APP_ID=12345, RUNKEYS_OIDC_AUDIENCE=https://runkeys.acme.example]
"""


def render(directory: Path) -> list[Doc]:
    done = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def base() -> list[Doc]:
    return render(BASE)


@pytest.fixture(scope="module")
def overlaid() -> Iterator[list[Doc]]:
    """The base through an overlay as the kustomization's comment tells users to write it."""
    with tempfile.TemporaryDirectory() as tmp:
        # kustomize takes a base by a relative path only
        base = os.path.relpath(BASE, tmp)
        (Path(tmp) / "kustomization.yaml").write_text(OVERLAY.format(base=base))
        yield render(Path(tmp))


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    [found] = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def config_maps(docs: list[Doc]) -> dict[str, dict[str, str]]:
    return {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}


def container(deployment: Doc) -> Doc:
    [found] = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(found, dict)
    return found


# Test values for what the Secrets hold; a real deployment's are its own.
SecretValues = Mapping[tuple[str, str], str]


def environment(docs: list[Doc], deployment: Doc, secret_values: SecretValues) -> dict[str, str]:
    """The container's environment as the kubelet would build it, with `secret_values` for the
    Secrets' keys (a Secret the test does not fill, like the connections, contributes none)."""
    maps = config_maps(docs)
    spec = container(deployment)
    env: dict[str, str] = {}
    for source in spec.get("envFrom", []):
        if "configMapRef" in source:
            env.update(maps[source["configMapRef"]["name"]])
    for var in spec.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "configMapKeyRef" in var["valueFrom"]:
            ref = var["valueFrom"]["configMapKeyRef"]
            env[var["name"]] = maps[ref["name"]][ref["key"]]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = secret_values[ref["name"], ref["key"]]
    return env


def mounted_file(docs: list[Doc], deployment: Doc, path: str) -> tuple[str, str, str]:
    """(`configMap` or `secret`, its name, the key) of the volume file at `path`."""
    pod = deployment["spec"]["template"]["spec"]
    directory, _, filename = path.rpartition("/")
    [mount] = [m for m in container(deployment)["volumeMounts"] if m["mountPath"] == directory]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    if "secret" in volume:
        items = {i["path"]: i["key"] for i in volume["secret"].get("items", [])}
        return "secret", volume["secret"]["secretName"], items.get(filename, filename)
    assert "configMap" in volume, volume
    return "configMap", volume["configMap"]["name"], filename


# --- the checks -----------------------------------------------------------------------------


def deployment_problems(docs: list[Doc]) -> list[str]:
    """What in the rendered base disagrees with the code; empty when nothing does."""
    found: list[str] = []
    image, tags = released_service_image()
    web, worker = one(docs, "Deployment", "runkeys-web"), one(docs, "Deployment", "runkeys-worker")
    uid, gid = (int(n) for n in image_user().split(":"))
    app_routes = routes()
    for deployment in (web, worker):
        name = deployment["metadata"]["name"]
        pod, spec = deployment["spec"]["template"]["spec"], container(deployment)
        repository, _, tag = spec["image"].rpartition(":")
        if not repository.endswith("/" + image) or tag not in tags:
            found.append(f"{name}: image {spec['image']} is not one the release pushes")
        names = [v["name"] for v in spec.get("env", [])]
        for source in spec.get("envFrom", []):
            if "configMapRef" in source:
                names += config_maps(docs)[source["configMapRef"]["name"]]
        found += [
            f"{name}: {n} is no setting of the service" for n in names if not known_setting(n)
        ]
        context = {**pod.get("securityContext", {}), **spec.get("securityContext", {})}
        wanted = {
            "runAsNonRoot": True, "runAsUser": uid, "runAsGroup": gid,
            "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
        }  # fmt: skip
        found += [
            f"{name}: securityContext {key} is {context.get(key)!r}, not {value!r}"
            for key, value in wanted.items()
            if context.get(key) != value
        ]
        if context.get("capabilities", {}).get("drop") != ["ALL"]:
            found.append(f"{name}: capabilities are not all dropped")
        # The service writes only under the temporary directory (tempfile: TMPDIR, else /tmp).
        env = {v["name"]: v.get("value", "") for v in spec.get("env", [])}
        writable = {
            m["mountPath"]
            for m in spec.get("volumeMounts", [])
            for v in pod["volumes"]
            if v["name"] == m["name"] and "emptyDir" in v
        }
        for needed in (env.get("TMPDIR", "/tmp"), env.get("PROMETHEUS_MULTIPROC_DIR")):
            if needed and not any(needed == w or needed.startswith(w + "/") for w in writable):
                found.append(f"{name}: {needed} is not writable (no emptyDir there)")

    spec = container(web)
    settings = environment(docs, web, _Anything())
    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    if ports.get("http") != port_of(settings.get("RUNKEYS_BIND", "")):
        found.append("web: the http port is not RUNKEYS_BIND's")
    bound = metrics_bind(settings)
    if bound is None or ports.get("metrics") != bound[1]:
        found.append("web: the metrics port is not RUNKEYS_METRICS_BIND's")
    if settings.get("RUNKEYS_WORKER") != "external":
        found.append("web: the embedded worker is on beside the worker Deployment")
    if container(worker).get("args") != ["worker"]:
        found.append("worker: does not run `runkeys worker`")
    for probe, endpoint in (("livenessProbe", "ops.healthz"), ("readinessProbe", "ops.readyz")):
        get = spec.get(probe, {}).get("httpGet", {})
        if app_routes.get(get.get("path")) != endpoint or get.get("port") != "http":
            found.append(f"web: {probe} is not {endpoint}'s route on the http port")

    web_labels = web["spec"]["template"]["metadata"]["labels"]
    worker_labels = worker["spec"]["template"]["metadata"]["labels"]

    def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in selector.items())

    service = one(docs, "Service", "runkeys")
    if not selects(service["spec"]["selector"], web_labels) or selects(
        service["spec"]["selector"], worker_labels
    ):
        found.append("service: does not select the web pods alone")
    if [p["targetPort"] for p in service["spec"]["ports"]] != ["http"]:
        found.append("service: routes more than the http port (metrics stay off it)")
    pdb = one(docs, "PodDisruptionBudget", "runkeys-web")
    if not selects(pdb["spec"]["selector"]["matchLabels"], web_labels):
        found.append("pdb: does not select the web pods")
    if not 0 < pdb["spec"]["minAvailable"] < web["spec"]["replicas"]:
        found.append("pdb: minAvailable leaves no pod to drain, or none running")
    policy = one(docs, "NetworkPolicy", "runkeys-web")["spec"]
    unrestricted = [rule for rule in policy["ingress"] if "from" not in rule]
    open_ports = [port["port"] for rule in unrestricted for port in rule["ports"]]
    if open_ports != ["http"]:
        found.append(f"networkpolicy: {open_ports} open to all, not http alone")
    if one(docs, "NetworkPolicy", "runkeys-worker")["spec"].get("ingress") != []:
        found.append("networkpolicy: the worker admits traffic")
    return found


class _Anything(dict[tuple[str, str], str]):
    """Secret values for the checks that only need names: each is a placeholder."""

    def __missing__(self, key: tuple[str, str]) -> str:
        return "secret"


# --- Kubernetes -----------------------------------------------------------------------------


def test_the_base_renders_every_part(base: list[Doc]) -> None:
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in base)
    assert [k for k, _ in kinds] == sorted(
        ["ConfigMap", "ConfigMap", "Deployment", "Deployment", "NetworkPolicy", "NetworkPolicy",
         "PodDisruptionBudget", "Service"]
    )  # fmt: skip


def test_the_base_agrees_with_the_code(base: list[Doc]) -> None:
    assert deployment_problems(base) == []


def _set(path: list[Any]) -> Callable[[list[Doc]], None]:
    def change(docs: list[Doc]) -> None:
        target: Any = one(docs, "Deployment", "runkeys-web")
        *keys, last, value = path
        for key in keys:
            target = target[key]
        target[last] = value

    return change


def _env(name: str, value: str) -> Callable[[list[Doc]], None]:
    def change(docs: list[Doc]) -> None:
        container(one(docs, "Deployment", "runkeys-web"))["env"].append(
            {"name": name, "value": value}
        )

    return change


def _no_tmp(docs: list[Doc]) -> None:
    spec = container(one(docs, "Deployment", "runkeys-worker"))
    spec["volumeMounts"] = [m for m in spec["volumeMounts"] if m["mountPath"] != "/tmp"]


def _service_selects_all(docs: list[Doc]) -> None:
    one(docs, "Service", "runkeys")["spec"]["selector"].pop("app.kubernetes.io/component")


C = ["spec", "template", "spec", "containers", 0]


@pytest.mark.parametrize(
    ("change", "caught"),
    [
        (_set([*C, "livenessProbe", "httpGet", "path", "/health"]), "livenessProbe"),
        (_set([*C, "livenessProbe", "httpGet", "path", "/readyz"]), "livenessProbe"),
        (_set([*C, "securityContext", "readOnlyRootFilesystem", False]), "readOnlyRootFilesystem"),
        (_set(["spec", "template", "spec", "securityContext", "runAsUser", 1000]), "runAsUser"),
        (_set([*C, "image", "ghcr.io/owner/runkeys-action:1"]), "image"),
        (_set([*C, "image", "ghcr.io/owner/runkeys-service:latest"]), "image"),
        (_env("RUNKEYS_METRIC_BIND", "0.0.0.0:9090"), "RUNKEYS_METRIC_BIND"),
        (_env("RUNKEYS_METRICS_BIND", "0.0.0.0:9091"), "metrics port"),
        (_env("RUNKEYS_WORKER", "embedded"), "embedded worker"),
        (_env("PROMETHEUS_MULTIPROC_DIR", "/var/run/metrics"), "/var/run/metrics"),
        (_no_tmp, "worker: /tmp is not writable"),
        (_service_selects_all, "web pods alone"),
    ],
)
def test_the_checks_catch_an_almost_right_base(
    base: list[Doc], change: Callable[[list[Doc]], None], caught: str
) -> None:
    docs = copy.deepcopy(base)
    change(docs)
    assert any(caught in problem for problem in deployment_problems(docs)), caught


def pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def materialize(
    docs: list[Doc], deployment: Doc, env: dict[str, str], tmp: Path, key_pem: str
) -> dict[str, str]:
    """`env` with each file setting pointing at a local copy of what its volume would hold."""
    out = dict(env)
    for setting in ("RUNKEYS_PRIVATE_KEY_FILE", "RUNKEYS_POLICY_FILE"):
        if setting not in env:
            continue
        kind, name, key = mounted_file(docs, deployment, env[setting])
        if kind == "secret":
            assert (name, key) == ("runkeys-app", "private-key.pem")
            text = key_pem
        else:
            text = config_maps(docs)[name][key]
        local = tmp / setting.lower()
        local.write_text(text)
        out[setting] = str(local)
    return out


@pytest.mark.services
def test_the_rendered_web_container_serves_its_probes_and_the_worker_starts(
    overlaid: list[Doc], tmp_path: Path
) -> None:
    web = one(overlaid, "Deployment", "runkeys-web")
    worker = one(overlaid, "Deployment", "runkeys-worker")
    assert container(web)["image"] == container(worker)["image"] == "ghcr.io/acme/runkeys-service:1"
    key_pem = pem()
    with postgres_database() as url:
        values = {
            ("runkeys-database", "url"): url,
            ("runkeys-app", "webhook-secret"): secrets.token_hex(16),
        }
        env = materialize(overlaid, web, environment(overlaid, web, values), tmp_path, key_pem)
        parse_policy(Path(env["RUNKEYS_POLICY_FILE"]).read_text())
        config = ServiceConfig.from_env(env)
        assert config.worker.embedded is False
        assert config.github is not None
        assert config.github.app is not None
        assert config.github.app.app_id == "12345"
        app = create_app(config)
        client = app.test_client()
        spec = container(web)
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            answer = client.get(spec[probe]["httpGet"]["path"])
            assert answer.status_code == 200, (probe, answer.get_data(as_text=True))
        assert client.get("/metrics").status_code == 404  # on RUNKEYS_METRICS_BIND alone
        app.extensions["runkeys"].close()

        worker_env = environment(overlaid, worker, values)
        assert "RUNKEYS_WEBHOOK_SECRET" not in worker_env  # what it does not need, it lacks
        worker_env = materialize(overlaid, worker, worker_env, tmp_path, key_pem)
        assert ServiceConfig.for_worker(worker_env).database_url == config.database_url


def test_the_base_alone_refuses_to_start_until_an_overlay_names_the_app(base: list[Doc]) -> None:
    web = one(base, "Deployment", "runkeys-web")
    env = environment(base, web, _Anything())
    with pytest.raises(ConfigError) as raised:
        ServiceConfig.from_env({**env, "RUNKEYS_DATABASE_URL": "sqlite:///./x.sqlite3"})
    assert "RUNKEYS_APP_ID" in str(raised.value)


READ_ONLY_ROOT = (
    # A mount namespace of its own, as a container's: the root read-only, a fresh tmpfs on /tmp
    # (the pod's emptyDir), then the image's user. The probe write proves the root is read-only.
    "mount -o remount,bind,ro / && mount --bind /tmp /mnt && mount -t tmpfs -o mode=1777 tmpfs /tmp"
    "{keep} && umount -l /mnt"
    " && ! touch /.runkeys-read-only-probe 2>/dev/null"
    ' && exec {user} "$@"'
)


def kept_from_tmp() -> str:
    """The tmpfs hides what /tmp held: a checkout (and its .venv) cloned under /tmp, as CI's
    may be, is bound back in, read-only, so that the code under test is still there."""
    tmp = Path("/tmp")
    code = Path(runkeys.__file__).resolve().parents[1]  # where the service's code is imported from
    needed = {ROOT, code, Path(sys.prefix), Path(os.path.realpath(sys.executable)).parent}
    under = sorted(p for p in needed if p.is_relative_to(tmp) and p != tmp)
    outermost = [p for p in under if not any(p != q and p.is_relative_to(q) for q in under)]
    steps = ""
    for path in outermost:
        inside, saved = (
            shlex.quote(str(path)),
            shlex.quote(str(Path("/mnt") / path.relative_to(tmp))),
        )
        steps += (
            f" && mkdir -p {inside} && mount --bind {saved} {inside}"
            f" && mount -o remount,bind,ro {inside}"
        )
    return steps


def others_can_run_this_python() -> bool:
    """Whether another user can run this interpreter: every directory down to it and to its
    standard library searchable by others (a Python under /root, as pyenv's, is not)."""
    paths = [Path(os.path.realpath(sys.executable)), Path(sys.base_prefix) / "lib"]
    for path in paths:
        for step in [path, *path.parents]:
            mode = step.stat().st_mode
            if not mode & (0o001 if step.is_dir() else 0o005):
                return False
    return True


def read_only_root() -> list[str]:
    """The command prefix that runs what follows as the pods do (root needed to set it up): as
    the image's user, unless this machine's Python is closed to other users (then as root, which
    still cannot write to the read-only root)."""
    for tool in ("unshare", "setpriv"):
        if shutil.which(tool) is None:
            skip_or_fail(f"{tool} is not installed (util-linux)")
    if os.geteuid() != 0:
        skip_or_fail("a read-only root in a mount namespace of its own needs root")
    uid, gid = image_user().split(":")
    user = f"setpriv --reuid {uid} --regid {gid} --clear-groups"
    if not others_can_run_this_python():
        user = ""
    script = READ_ONLY_ROOT.format(user=user, keep=kept_from_tmp())
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "read-only"]


@pytest.mark.slow
@pytest.mark.services
def test_the_service_and_the_worker_run_on_a_read_only_root_with_only_tmp_writable(
    overlaid: list[Doc], tmp_path: Path
) -> None:
    """`runkeys serve` (gunicorn, two workers, /metrics apart) and `runkeys worker`, with the
    web and worker containers' environments, as uid 10001 on a read-only root with a tmpfs on
    /tmp alone: they start, answer, and stop without writing anywhere else."""
    prefix = read_only_root()
    web = one(overlaid, "Deployment", "runkeys-web")
    worker = one(overlaid, "Deployment", "runkeys-worker")
    uid, gid = (int(n) for n in image_user().split(":"))
    # The mounted files, outside /tmp (the tmpfs hides it), readable as the volumes make them.
    files = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="runkeys-deploy-"))
    try:
        with postgres_database() as url:
            values = {
                ("runkeys-database", "url"): url,
                ("runkeys-app", "webhook-secret"): secrets.token_hex(16),
            }
            key_pem = pem()
            env = materialize(overlaid, web, environment(overlaid, web, values), files, key_pem)
            worker_env = environment(overlaid, worker, values)
            worker_env = materialize(overlaid, worker, worker_env, files, key_pem)
            for path in files.iterdir():
                os.chown(path, 0, gid)
                path.chmod(0o440)  # the Secret volume's defaultMode, group the pod's fsGroup
            files.chmod(0o755)
            metrics_port = free_port()
            env["PATH"] = os.environ["PATH"]
            env["RUNKEYS_METRICS_BIND"] = f"127.0.0.1:{metrics_port}"  # a free port, not 9090
            log = tmp_path / "serve.log"
            served = runkeys_serve(env, log, workers=2, metrics=False, prefix=prefix, cwd=files)
            try:
                assert requests.get(served.url + "/healthz", timeout=5).status_code == 200
                assert requests.get(served.url + "/metrics", timeout=5).status_code == 404
                metrics = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
                assert metrics.status_code == 200
                assert "runkeys_" in metrics.text
                if others_can_run_this_python():
                    status = Path(f"/proc/{served.process.pid}/status").read_text()
                    assert re.search(rf"^Uid:\t{uid}\t", status, re.M), status
            finally:
                assert served.stop(), served.tail()
            text = log.read_text()
            assert "Read-only file system" not in text, text[-3000:]
            assert "Traceback" not in text, text[-3000:]

            done = subprocess.run(
                [*prefix, sys.executable, "-m", "runkeys.cli", "worker", "--once"],
                env={**worker_env, "PATH": os.environ["PATH"]}, cwd=files,
                capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
            assert '"retired_or_attempted": 0' in done.stdout
    finally:
        shutil.rmtree(files, ignore_errors=True)


# --- compose --------------------------------------------------------------------------------


def compose() -> Doc:
    doc: Doc = yaml.safe_load(COMPOSE.read_text())
    return doc


def interpolate(text: str, variables: Mapping[str, str]) -> str:
    """Compose's `${NAME}`, `${NAME:?message}` and `${NAME:-default}`: a missing required one
    raises KeyError, as `docker compose` stops with its message."""

    def one_variable(match: re.Match[str]) -> str:
        name, op, rest = match["name"], match["op"], match["rest"]
        if variables.get(name):
            return variables[name]
        if op == ":-":
            return rest or ""
        raise KeyError(f"{name}: {rest}")

    return re.sub(r"\$\{(?P<name>\w+)(?:(?P<op>:\?|:-)(?P<rest>[^}]*))?\}", one_variable, text)


def test_the_compose_file_is_valid_by_the_compose_specification() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(COMPOSE)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_names_the_same_settings_as_the_kubernetes_base(base: list[Doc]) -> None:
    services = compose()["services"]
    image, tags = released_service_image()
    for name, deployment in (("web", "runkeys-web"), ("worker", "runkeys-worker")):
        service, rendered = services[name], one(base, "Deployment", deployment)
        assert service["image"] == container(rendered)["image"]
        assert service["image"].rpartition(":")[0].endswith("/" + image)
        assert service["image"].rpartition(":")[2] in tags
        assert service["command"] == container(rendered)["args"]
        compose_names = set(service["environment"])
        assert all(known_setting(n) for n in compose_names), compose_names
        assert compose_names == set(environment(base, rendered, _Anything()))
        assert service["user"] == image_user()
        assert service["read_only"] is True
        assert "/tmp" in service["tmpfs"]
        assert service["cap_drop"] == ["ALL"]
        assert service["security_opt"] == ["no-new-privileges:true"]
    web = services["web"]["environment"]
    published = {p.rpartition(":")[0]: int(p.rpartition(":")[2]) for p in services["web"]["ports"]}
    assert published == {
        str(port_of(web["RUNKEYS_BIND"])): port_of(web["RUNKEYS_BIND"]),
        f"127.0.0.1:{port_of(web['RUNKEYS_METRICS_BIND'])}": port_of(web["RUNKEYS_METRICS_BIND"]),
    }  # /metrics published on the host's loopback only


VARIABLES = {
    "RUNKEYS_APP_ID": "12345",
    "RUNKEYS_OIDC_AUDIENCE": "https://runkeys.acme.example",
    "RUNKEYS_WEBHOOK_SECRET": "webhook-secret",
    "RUNKEYS_DB_PASSWORD": "ledgerpassword",
}


def test_compose_stops_without_each_required_setting() -> None:
    text = COMPOSE.read_text()
    variables = {**VARIABLES, "RUNKEYS_PRIVATE_KEY_PATH": "/etc/runkeys/app.pem"}
    interpolate(text, variables)
    for name in variables:
        with pytest.raises(KeyError, match=name):
            interpolate(text, {k: v for k, v in variables.items() if k != name})


@pytest.mark.services
def test_the_compose_web_service_serves_its_probes(tmp_path: Path) -> None:
    key = tmp_path / "app.pem"
    key.write_text(pem())
    doc = yaml.safe_load(
        interpolate(COMPOSE.read_text(), {**VARIABLES, "RUNKEYS_PRIVATE_KEY_PATH": str(key)})
    )
    web, worker, db = (doc["services"][n] for n in ("web", "worker", "db"))
    for service in (web, worker, db):  # compose passes every value on as a string
        service["environment"] = {k: str(v) for k, v in service["environment"].items()}
    url = web["environment"]["RUNKEYS_DATABASE_URL"]
    assert url == worker["environment"]["RUNKEYS_DATABASE_URL"]
    # The ledger is the `db` service, with its user, database and password.
    parts = re.fullmatch(r"postgresql://(\w+):(\w+)@db:5432/(\w+)", url)
    assert parts is not None
    expected = db["environment"]
    assert parts.groups() == (
        expected["POSTGRES_USER"], expected["POSTGRES_PASSWORD"], expected["POSTGRES_DB"]
    )  # fmt: skip
    files = {doc["secrets"][s["source"]]["file"]: s["target"] for s in web["secrets"]} | {
        str(COMPOSE.parent / doc["configs"][c["source"]]["file"]): c["target"]
        for c in web["configs"]
    }
    local = {target: source for source, target in files.items()}
    assert web["depends_on"]["db"]["condition"] == "service_healthy"
    with postgres_database() as ledger:
        env = {**web["environment"], "RUNKEYS_DATABASE_URL": ledger}
        for setting in ("RUNKEYS_PRIVATE_KEY_FILE", "RUNKEYS_POLICY_FILE"):
            env[setting] = local[env[setting]]
        app = create_app(env)
        client = app.test_client()
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        app.extensions["runkeys"].close()
        worker_env = {**worker["environment"], "RUNKEYS_DATABASE_URL": ledger}
        worker_env["RUNKEYS_PRIVATE_KEY_FILE"] = local[worker_env["RUNKEYS_PRIVATE_KEY_FILE"]]
        ServiceConfig.for_worker(worker_env)


# --- docs -----------------------------------------------------------------------------------


def test_the_deployment_docs_show_each_file() -> None:
    page = (ROOT / "docs" / "service.md").read_text()
    section = page[page.index("\n## Deployment\n") : page.index("\n## Container image\n")]
    assert "deploy/compose.yaml" in section
    for path in sorted(BASE.iterdir()):
        assert f"`{path.name}`" in section, path.name
    for secret in ("runkeys-app", "runkeys-database", "runkeys-connections"):
        assert f"`{secret}`" in section
        assert secret in (BASE / "kustomization.yaml").read_text()
