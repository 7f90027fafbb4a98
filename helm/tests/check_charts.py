"""Renders the Helm charts and checks what they render against Kubernetes and against
the binaries, so that the charts and the binaries cannot drift apart.

For each chart and each values file in helm/tests/<chart>/ (with the registry of a
PKI generated for the run, helm/tests/<chart>/invalid/ aside):
  1. `helm lint --strict` and `helm template` with a real helm;
  2. every rendered manifest validated against the Kubernetes JSON schemas in strict
     mode (kubernetes-validate); the custom resources it has no schema for are checked
     here (the Certificate's SPIFFE identity) and by promtool (the PrometheusRule);
  3. the rules the chart must keep: the admin and operator ports in no Service, a
     NetworkPolicy that admits the admin port only from named peers, probes on the
     admin port, a read-only root filesystem, the config's checksum on the pods, the
     registry rendered whole (issuer keys, identities, several endpoints);
  4. the pod's files laid out as Kubernetes would mount them (ConfigMaps from the
     render, Secrets from the generated PKI, with the volumes' modes and fsGroup) inside
     the image's filesystem (deploy/image/rootfs.sh, which the Dockerfile's runtime
     stages are made of), and `tongban-gateway --check` / `tongban-node --check` run
     there on the rendered config as the pod would run them: chrooted, as user 65532,
     the root filesystem read-only and only the pod's volumes writable. (Where chroot
     and mounts are refused, not root or a sandbox that forbids them, the config's
     paths are rewritten into a plain folder instead, and the binaries run from the
     build; the output says which.)
Each values file in invalid/ must be refused, with the message its first line expects.

Usage: check_charts.py --helm H --validate V --promtool P --bin-dir D [--rootfs R]
"""

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHARTS = ["tongban-gateway", "tongban-node"]
KUBERNETES = "1.33.0"
NAMESPACE = "tongban"
# Custom resources kubernetes-validate has no schema for: checked below instead.
CUSTOM_KINDS = {"Certificate", "PodMonitor", "PrometheusRule"}
PRIVATE_PORTS = {"admin", "operators"}
# The pods' user and fsGroup (the charts' podSecurityContext).
POD_USER = 65532

failures = []


def fail(what):
    failures.append(what)
    print(f"  FAIL {what}")


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, **kw)


def pki_files(pki):
    """Secret name -> {key: bytes}, as an operator would create them from the PKI."""
    read = lambda name: (pki / name).read_bytes()
    tls = lambda leaf, ca_key: {
        "tls.crt": read(f"{leaf}.pem"),
        "tls.key": read(f"{leaf}.key"),
        ca_key: read("ca.pem"),
    }
    db = {"password": b"not-a-real-password\n", "ca.crt": read("ca.pem")}
    return {
        "tongban-gateway-tls": tls("gateway", "ca.pem"),
        "tongban-federation-crl": {"crl.pem": read("crl.pem")},
        "tongban-gateway-hash": {"hash.key": secrets.token_bytes(32)},
        "tongban-gateway-db": db,
        "tongban-node-44-tls": tls("region-44", "ca.pem"),
        "tongban-node-44-issuer": {"issuer-44-k1.key": read("issuer-44-k1.key")},
        "tongban-node-31-issuer": {"issuer-31-k1.key": read("issuer-31-k1.key")},
        "tongban-node-44-portal": {"portal.key": read("portal-44.key")},
        "tongban-node-44-db": db,
        "tongban-node-44-db-client": {"tls.crt": read("region-44.pem"), "tls.key": read("region-44.key")},
        "gd-platform-ca": {"ca.crt": read("ca.pem")},
        "tongban-node-44-platform-client": {
            "tls.crt": read("region-44.pem"),
            "tls.key": read("region-44.key"),
        },
        # The shared secret of HMAC signatures is text, as `tongban platform serve` reads it.
        "tongban-node-44-platform-hmac": {"secret": secrets.token_hex(32).encode()},
        # What cert-manager writes for the releases' Certificates.
        "gw-tls": tls("gateway", "ca.crt"),
        "node-tls": tls("region-31", "ca.crt"),
    }


def registry(pki):
    """The registry for the run: issuer keys from the PKI, one explicit identity, a
    region with two endpoints."""
    def key(prefix):
        return {
            "id": f"{prefix}-k1",
            "ed25519_public_key": (pki / f"issuer-{prefix}-k1.pub").read_text().strip(),
            "not_before": "2026-01-01T00:00:00Z",
            "not_after": "2027-12-31T00:00:00Z",
        }
    return [
        {"prefix": "11", "endpoints": ["https://node.tongban-11.svc:7000"], "issuer_keys": [key("11")]},
        {
            "prefix": "31",
            "identity": "spiffe://tongban/region/31",
            "endpoints": ["https://node.tongban-31.svc:7000"],
            "issuer_keys": [key("31")],
        },
        {
            "prefix": "44",
            "endpoints": ["https://node-a.tongban-44.svc:7000", "https://node-b.tongban-44.svc:7000"],
            "issuer_keys": [key("44")],
        },
    ]


def render(args, chart, release, values):
    flags = [f for v in values for f in ("-f", str(v))]
    lint = run([args.helm, "lint", "--strict", str(ROOT / "helm" / chart), *flags])
    if lint.returncode != 0:
        fail(f"{chart} {values[-1].name}: helm lint --strict\n{lint.stdout}{lint.stderr}")
    out = run([
        args.helm, "template", release, str(ROOT / "helm" / chart), *flags,
        "--namespace", NAMESPACE, "--kube-version", KUBERNETES,
    ])
    if out.returncode != 0:
        fail(f"{chart} {values[-1].name}: helm template\n{out.stderr}")
        return None, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d], out.stdout


def validate(args, work, docs, what):
    """Strict validation of every manifest; custom resources are handled elsewhere."""
    path = work / "manifests.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    out = run([args.validate, "--strict", "-k", KUBERNETES, str(path)])
    text = out.stdout + out.stderr
    unknown = re.findall(r"Couldn't find schema for kind (\w+)", text)
    for kind in set(unknown) - CUSTOM_KINDS:
        fail(f"{what}: no schema for {kind}")
    said = [l for l in text.splitlines() if not l.startswith("INFO")]
    if out.returncode != 0 or any(l.startswith("ERROR") for l in said):
        fail(f"{what}: kubernetes-validate --strict\n" + "\n".join(said))
    checked = len(docs) - len([d for d in docs if d["kind"] in CUSTOM_KINDS])
    return checked


def check_rules(args, work, docs, what):
    for d in docs:
        if d["kind"] == "PrometheusRule":
            rules = work / "rules.yml"
            rules.write_text(yaml.safe_dump(d["spec"]))
            out = run([args.promtool, "check", "rules", str(rules)])
            if out.returncode != 0:
                fail(f"{what}: promtool check rules\n{out.stdout}{out.stderr}")
            if not d["spec"].get("groups"):
                fail(f"{what}: PrometheusRule without groups")
        if d["kind"] == "PodMonitor":
            endpoints = d["spec"]["podMetricsEndpoints"]
            if [e["port"] for e in endpoints] != ["admin"] or d["spec"].get("jobLabel") != "app.kubernetes.io/name":
                fail(f"{what}: PodMonitor must scrape the admin port with job = the app's name")


def check_rules_of_the_chart(docs, chart, what, expect_identity):
    kinds = {}
    for d in docs:
        kinds.setdefault(d["kind"], []).append(d)
    for svc in kinds.get("Service", []):
        for port in svc["spec"]["ports"]:
            if port.get("targetPort") in PRIVATE_PORTS or port.get("name") in PRIVATE_PORTS:
                fail(f"{what}: Service {svc['metadata']['name']} exposes {port}")
    (sts,) = kinds["StatefulSet"]
    pod = sts["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for svc in kinds.get("Service", []):
        for port in svc["spec"]["ports"]:
            if port.get("targetPort") in (ports.get("admin"), ports.get("operators")):
                fail(f"{what}: Service {svc['metadata']['name']} targets a private port")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if container[probe]["httpGet"]["port"] != "admin":
            fail(f"{what}: {probe} not on the admin port")
    if not container["securityContext"].get("readOnlyRootFilesystem"):
        fail(f"{what}: root filesystem writable")
    if not pod["spec"]["securityContext"].get("runAsNonRoot"):
        fail(f"{what}: may run as root")
    if "checksum/config" not in pod["metadata"].get("annotations", {}):
        fail(f"{what}: no config checksum on the pods")
    claims = {c["metadata"]["name"] for c in sts["spec"].get("volumeClaimTemplates", [])}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    if "audit" not in claims and "emptyDir" not in volumes.get("audit", {}):
        fail(f"{what}: the audit trail has no volume")
    policies = kinds.get("NetworkPolicy", [])
    if len(policies) != 1:
        fail(f"{what}: expected one NetworkPolicy, got {len(policies)}")
    else:
        rules = policies[0]["spec"]["ingress"]
        for rule in rules:
            named = {p["port"] for p in rule["ports"]}
            if named & PRIVATE_PORTS and not rule.get("from"):
                fail(f"{what}: NetworkPolicy admits {named} from anywhere")
        admitted = {p["port"] for r in rules for p in r["ports"]}
        if admitted - {"federation", "portal", "admin", "operators"}:
            fail(f"{what}: NetworkPolicy admits unknown ports {admitted}")
    for cert in kinds.get("Certificate", []):
        if cert["spec"]["uris"] != [expect_identity]:
            fail(f"{what}: Certificate URI SANs {cert['spec']['uris']} != {expect_identity}")
    pdbs = kinds.get("PodDisruptionBudget", [])
    if len(pdbs) != 1:
        fail(f"{what}: expected a PodDisruptionBudget")
    return sts, kinds.get("ConfigMap", [])


def check_registry(text, what):
    reg = __import__("tomllib").loads(text)
    regions = reg.get("region", [])
    if not regions or not all(r.get("issuer_keys") for r in regions):
        fail(f"{what}: registry without issuer keys: {regions}")
    if not any(r.get("identity") for r in regions):
        fail(f"{what}: the explicit identity was lost")
    if not any(len(r["endpoints"]) > 1 for r in regions):
        fail(f"{what}: several endpoints were lost")
    return len(regions)


def lay_out_pod(sts, configmaps, secrets_by_name, root):
    """Writes the pod's mounted files under root, as Kubernetes would mount them (the
    volume's mode, group fsGroup); returns {mountPath: (folder, writable)}."""
    pod = sts["spec"]["template"]["spec"]
    data = {cm["metadata"]["name"]: cm["data"] for cm in configmaps}
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {}
    for mount in pod["containers"][0]["volumeMounts"]:
        folder = root / mount["mountPath"].lstrip("/")
        folder.mkdir(parents=True, exist_ok=True)
        volume = volumes.get(mount["name"])
        # A volume claim template or an emptyDir: the pod's only writable places.
        writable = volume is None or "emptyDir" in volume
        mounts[mount["mountPath"]] = (folder, writable)
        if writable:
            os.chown(folder, POD_USER, POD_USER) if os.geteuid() == 0 else None
            continue

        def put(files, items, mode):
            if items is None:
                items = [{"key": k, "path": k} for k in files]
            for item in items:
                if item["key"] not in files:
                    raise KeyError(f"{mount['name']}: no key {item['key']}")
                content = files[item["key"]]
                path = folder / item["path"]
                path.write_bytes(content if isinstance(content, bytes) else content.encode())
                path.chmod(mode)
                if os.geteuid() == 0:
                    os.chown(path, 0, POD_USER)

        if "configMap" in volume:
            source = volume["configMap"]
            put(data[source["name"]], source.get("items"), source.get("defaultMode", 0o644))
        elif "secret" in volume:
            source = volume["secret"]
            put(secrets_by_name[source["secretName"]], source.get("items"), source.get("defaultMode", 0o644))
        elif "projected" in volume:
            mode = volume["projected"].get("defaultMode", 0o644)
            for source in volume["projected"]["sources"]:
                put(secrets_by_name[source["secret"]["name"]], source["secret"].get("items"), mode)
    return mounts


def in_the_pod(root, mounts, argv):
    """argv as the pod runs it: chrooted into root, as the pod's user, the root
    filesystem read-only, the volumes that are writable in the pod writable here."""
    script = [f"mount --bind {root} {root}", f"mount -o remount,bind,ro {root}"]
    for folder, writable in mounts.values():
        if writable:
            script.append(f"mount --bind {folder} {folder}")
    script.append(f"exec chroot --userspec={POD_USER}:{POD_USER} {root} " + " ".join(argv))
    return ["unshare", "--mount", "sh", "-euc", " && ".join(script)]


def can_chroot():
    """Whether this process may make a mount namespace and chroot (root, and a
    sandbox that allows it)."""
    if os.geteuid() != 0:
        return False
    return run(["unshare", "--mount", "chroot", "/", "true"]).returncode == 0


def check_binary(args, chart, sts, configmaps, secrets_by_name, work, what):
    in_image = args.rootfs is not None and args.can_chroot
    root = work / "pod"
    if in_image:
        shutil.copytree(args.rootfs, root, symlinks=True, copy_function=os.link)
    try:
        mounts = lay_out_pod(sts, configmaps, secrets_by_name, root)
    except KeyError as missing:
        fail(f"{what}: a mounted secret or ConfigMap lacks {missing}")
        return
    binary = "tongban-gateway" if chart == "tongban-gateway" else "tongban-node"
    config_name = "gateway.toml" if binary == "tongban-gateway" else "node.toml"
    config_path = mounts["/etc/tongban/config"][0] / config_name
    text = config_path.read_text()
    named = set(re.findall(r'"(/(?:etc|var|run|tmp)/[^"]*)"', text))
    unmounted = [p for p in named if not any(p == m or p.startswith(m + "/") for m in mounts)]
    if unmounted:
        fail(f"{what}: the config names files no volume mounts: {unmounted}")
    if in_image:
        argv = in_the_pod(root, mounts, [f"/usr/local/bin/{binary}", "--config", f"/etc/tongban/config/{config_name}", "--check"])
        where = "in the image, as the pod runs it"
    else:
        # The config names files where the pod mounts them: the same files, here.
        for mount_path in sorted(mounts, key=len, reverse=True):
            text = text.replace(f'"{mount_path}/', f'"{mounts[mount_path][0]}/')
        config_path.write_text(text)
        argv = [str(args.bin_dir / binary), "--config", str(config_path), "--check"]
        where = "on the host (chroot not permitted here)"
    out = run(argv, env={**os.environ, "RUST_LOG": "error", "RUST_BACKTRACE": "0"})
    if out.returncode != 0:
        fail(f"{what}: {binary} --check\n{out.stdout}{out.stderr}\n--- config ---\n{text}")
    else:
        print(f"  {binary} --check {where}: {out.stdout.strip().split(': ', 1)[-1]}")


def check_invalid(args, chart, reg_values):
    for values in sorted((ROOT / "helm" / "tests" / chart / "invalid").glob("*.yaml")):
        expect = values.read_text().splitlines()[0].removeprefix("# expect: ").strip()
        out = run([
            args.helm, "template", "bad", str(ROOT / "helm" / chart),
            "-f", str(reg_values), "-f", str(values), "--kube-version", KUBERNETES,
        ])
        said = (out.stdout + out.stderr).strip()
        if out.returncode == 0:
            fail(f"{chart} invalid/{values.name}: rendered, should have been refused")
        elif expect not in said:
            fail(f"{chart} invalid/{values.name}: refused, but not for {expect!r}:\n{said}")
        else:
            first = next((l for l in said.splitlines() if expect in l), said.splitlines()[-1])
            print(f"  invalid/{values.name}: refused: {first.strip()}")


def check_values(args, chart, release, values, reg_values, secrets_by_name, work, what):
        docs, _ = render(args, chart, release, [reg_values[chart], values])
        if docs is None:
            return 0
        checked = validate(args, work, docs, what)
        print(f"  {len(docs)} manifests, {checked} validated strictly against Kubernetes {KUBERNETES}")
        check_rules(args, work, docs, what)
        prefix = "31" if "cert-manager" in values.name and chart == "tongban-node" else "44"
        identity = "spiffe://tongban/gateway" if chart == "tongban-gateway" else f"spiffe://tongban/region/{prefix}"
        sts, configmaps = check_rules_of_the_chart(docs, chart, what, identity)
        for cm in configmaps:
            if "registry.toml" in cm["data"]:
                n = check_registry(cm["data"]["registry.toml"], what)
                print(f"  registry: {n} regions, each with issuer keys")
        check_binary(args, chart, sts, configmaps, secrets_by_name, work, what)
        return len(docs)



def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--helm", required=True)
    parser.add_argument("--validate", required=True)
    parser.add_argument("--promtool", required=True)
    parser.add_argument("--bin-dir", required=True, type=Path)
    parser.add_argument("--rootfs", type=Path, help="the images' filesystem (deploy/image/rootfs.sh)")
    args = parser.parse_args()
    args.can_chroot = can_chroot()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pki = tmp / "pki"
        certs = run([
            str(args.bin_dir / "tongban"), "certs", "--out", str(pki),
            "--regions", "11,31,44", "--operators", "alice,bob",
        ])
        if certs.returncode != 0:
            sys.exit(f"tongban certs failed:\n{certs.stderr}")
        secrets_by_name = pki_files(pki)
        regions = registry(pki)
        reg_values = {
            "tongban-gateway": tmp / "gateway-registry.yaml",
            "tongban-node": tmp / "node-registry.yaml",
        }
        reg_values["tongban-gateway"].write_text(yaml.safe_dump({"registry": regions}))
        reg_values["tongban-node"].write_text(yaml.safe_dump({"peers": {"registry": regions}}))

        manifests = 0
        for chart in CHARTS:
            release = "gw" if chart == "tongban-gateway" else "node"
            for values in sorted((ROOT / "helm" / "tests" / chart).glob("*.yaml")):
                what = f"{chart} {values.name}"
                print(f"{what}")
                work = Path(tempfile.mkdtemp(dir=tmp))
                try:
                    manifests += check_values(args, chart, release, values, reg_values, secrets_by_name, work, what)
                except Exception as error:  # a render missing what a check reads
                    fail(f"{what}: {type(error).__name__}: {error}")
            print(f"{chart} invalid values")
            check_invalid(args, chart, reg_values[chart])

        print(f"\n{manifests} manifests rendered; {len(failures)} failure(s)")
        if failures:
            sys.exit(1)


if __name__ == "__main__":
    main()
