"""Build the container images without any container registry: ``python scripts/images.py``.

1. Base images, unless given (``--python-base``, ``--java-base``, e.g. ``python:3.11-slim`` where a registry
   is reachable): a Debian root filesystem made by ``debootstrap`` from Debian's packages, then ``docker
   import``. The Debian mirror is ``DEBIAN_MIRROR``, else the one this host's apt uses.
2. The project's wheels and its dependencies', resolved on this host with pip (so the image's Python
   must be this interpreter's version).
3. Kafka's jars from Maven Central (``kafka-docker/pom.xml``), the same as the local broker's.
4. Debian's ``prometheus`` and ``prometheus-alertmanager`` packages, downloaded with this host's apt (so the
   host is a Debian of the base's release), and the configuration in ``monitoring/``.
5. ``docker build``: log-pipeline/ml-service, log-pipeline/processor, log-pipeline/simulator, log-pipeline/kafka,
   log-pipeline/prometheus, log-pipeline/alertmanager.

Everything is staged in a temporary folder; nothing inside a build reaches the network.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
STAGING = REPO / "staging"
# Outside the repository: the staged copies and the root filesystems are not part of the source tree.
BUILD = Path(tempfile.gettempdir()) / "log-pipeline-images"
SUITE = "bookworm"
PYTHON_BASE = f"log-pipeline/debian-python:{SUITE}"
JAVA_BASE = f"log-pipeline/debian-java:{SUITE}"
# What each base root filesystem holds beyond debootstrap's minimal base.
BASE_PACKAGES = {
    PYTHON_BASE: "python3,python3-venv,ca-certificates",
    JAVA_BASE: "openjdk-17-jre-headless",
}
# Documentation, manuals, translations and downloaded packages: not needed to run anything.
TRIM = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "var/cache/apt", "var/lib/apt/lists")
SERVICES = {"ml-service": "fastapi-ml-service", "processor": "processor", "simulator": "log-simulator"}
MONITORING = REPO / "monitoring"
MONITORING_PACKAGES = ("prometheus", "prometheus-alertmanager")
# Where Prometheus finds each job, and Alertmanager, inside the compose network (monitoring/prometheus.yml
# names the host's ports, for `make monitoring-up`).
COMPOSE_TARGETS = {"anomaly-processor": "processor:9108", "ml-service": "ml-service:8000"}
COMPOSE_ALERTMANAGER = "alertmanager:9093"


class BuildError(Exception):
    """A step failed; the message says which and why."""


def run(argv: list[str], **kwargs: object) -> None:
    print("+ " + " ".join(argv), flush=True)
    result = subprocess.run(argv, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise BuildError(f"{argv[0]} {argv[1] if len(argv) > 1 else ''} exited with {result.returncode}")


def image_exists(name: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", name], capture_output=True).returncode == 0


def debian_mirror() -> str:
    """``DEBIAN_MIRROR``, else the first Debian archive this host's apt is configured with."""
    if os.environ.get("DEBIAN_MIRROR"):
        return os.environ["DEBIAN_MIRROR"]
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        for url in re.findall(r"(?:^URIs:|^deb(?:\s+\[[^\]]*\])?)\s+(\S+)", text, flags=re.M):
            if url.rstrip("/").endswith("/debian"):
                return url
    raise BuildError("no Debian mirror found in this host's apt sources: set DEBIAN_MIRROR")


def build_base(name: str) -> None:
    """A base image from Debian's packages: debootstrap a minimal root filesystem and import it."""
    if shutil.which("debootstrap") is None:
        raise BuildError("debootstrap is not installed (apt-get install debootstrap), or pass a base image")
    if os.geteuid() != 0:
        raise BuildError("debootstrap needs root: run as root, or pass a base image")
    rootfs = BUILD / ("rootfs-" + name.split("/")[1].split(":")[0])
    shutil.rmtree(rootfs, ignore_errors=True)
    started = time.monotonic()
    run(
        ["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES[name]}", SUITE, str(rootfs), debian_mirror()],
        stdout=subprocess.DEVNULL,
    )
    for part in TRIM:
        shutil.rmtree(rootfs / part, ignore_errors=True)
    for part in ("var/cache/apt/archives/partial", "var/lib/apt/lists/partial"):  # apt-get in a derived image
        (rootfs / part).mkdir(parents=True, exist_ok=True)
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    run(["docker", "import", "-", name], stdin=tar.stdout, stdout=subprocess.DEVNULL)
    tar.wait()
    shutil.rmtree(rootfs, ignore_errors=True)
    print(f"{name}: imported from debootstrap in {time.monotonic() - started:.0f}s", flush=True)


def stage_python() -> Path:
    """The Python images' build context: the wheelhouse and the services' entry points."""
    context = BUILD / "python"
    shutil.rmtree(context, ignore_errors=True)
    (context / "services").mkdir(parents=True)
    leftover = not (REPO / "build").exists()
    run([sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(context / "wheels"), str(REPO)])
    if leftover:  # setuptools builds the project's wheel in the source tree
        shutil.rmtree(REPO / "build", ignore_errors=True)
    for folder in SERVICES.values():
        for source in (REPO / folder).glob("*.py"):
            (context / "services" / folder).mkdir(exist_ok=True)
            shutil.copy2(source, context / "services" / folder / source.name)
    shutil.copy2(STAGING / "python.Dockerfile", context / "Dockerfile")
    return context


def stage_kafka() -> Path:
    """The broker image's build context: the jars, the entry point and the logging configurations."""
    from local_kafka.broker import CONFIG_DIR, LIBS_DIR, ensure_jars

    ensure_jars()
    context = BUILD / "kafka"
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    shutil.copytree(LIBS_DIR, context / "libs")
    for name in ("kafka.Dockerfile", "kafka-entrypoint.sh", "log4j2.yaml"):
        shutil.copy2(STAGING / name, context / ("Dockerfile" if name == "kafka.Dockerfile" else name))
    shutil.copy2(CONFIG_DIR / "log4j2-tools.yaml", context)  # the console consumer's: warnings only, on stderr
    return context


def compose_prometheus_config() -> str:
    """monitoring/prometheus.yml with the compose services as its targets and Alertmanager."""
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [COMPOSE_TARGETS[job["job_name"]]]}]
    config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [COMPOSE_ALERTMANAGER]}]}]
    header = "# Written by scripts/images.py from monitoring/prometheus.yml: the targets are compose services.\n"
    return header + yaml.safe_dump(config, sort_keys=False)


def stage_monitoring() -> Path:
    """The monitoring images' build context: Debian's packages (not installed, unpacked) and the configuration."""
    if shutil.which("apt-get") is None:
        raise BuildError("apt-get is not available: the monitoring images are made from Debian's packages")
    context = BUILD / "monitoring"
    shutil.rmtree(context, ignore_errors=True)
    (context / "debs").mkdir(parents=True)
    # As root, apt's download sandbox user cannot write here: download as root, without the warning.
    run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", *MONITORING_PACKAGES], cwd=context / "debs")
    (context / "prometheus.yml").write_text(compose_prometheus_config())
    for name in ("rules.yml", "alertmanager.yml"):
        shutil.copy2(MONITORING / name, context / name)
    shutil.copy2(STAGING / "monitoring.Dockerfile", context / "Dockerfile")
    return context


def python_version(image: str) -> str:
    out = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "python3", image, "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def build_targets(context: Path, targets: Iterable[str], base: str, tag: str) -> list[str]:
    """One image per target of the context's multi-stage Dockerfile: log-pipeline/<target>:<tag>."""
    names = []
    for target in targets:
        name = f"log-pipeline/{target}:{tag}"
        build = ["docker", "build", "-q", "--target", target, "--build-arg", f"BASE_IMAGE={base}"]
        run([*build, "-t", name, str(context)])
        names.append(name)
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--python-base", help=f"base of the Python and monitoring images (default: {PYTHON_BASE}, built here)"
    )
    parser.add_argument("--java-base", help=f"base of the broker image (default: {JAVA_BASE}, built here)")
    parser.add_argument("--tag", default="latest")
    parser.add_argument("--only", choices=["python", "kafka", "monitoring"], help="build only these images")
    options = parser.parse_args(argv)
    started = time.monotonic()
    built: list[str] = []
    try:
        if shutil.which("docker") is None:
            raise BuildError("docker is not installed")
        if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
            raise BuildError("the Docker engine does not answer (`docker info` fails): start dockerd")
        if options.only in (None, "python", "monitoring"):
            base = options.python_base or PYTHON_BASE
            if not options.python_base and not image_exists(PYTHON_BASE):
                build_base(PYTHON_BASE)
        if options.only in (None, "python"):
            here = str(sys.version_info[:2])
            if python_version(base) != here:
                raise BuildError(f"{base} runs Python {python_version(base)}, but the wheels are for {here}")
            context = stage_python()
            built += build_targets(context, SERVICES, base, options.tag)
        if options.only in (None, "monitoring"):
            built += build_targets(stage_monitoring(), ("prometheus", "alertmanager"), base, options.tag)
        if options.only in (None, "kafka"):
            base = options.java_base or JAVA_BASE
            if not options.java_base and not image_exists(JAVA_BASE):
                build_base(JAVA_BASE)
            name = f"log-pipeline/kafka:{options.tag}"
            run(["docker", "build", "-q", "--build-arg", f"BASE_IMAGE={base}", "-t", name, str(stage_kafka())])
            built.append(name)
    except BuildError as exc:
        print(f"images: {exc}", file=sys.stderr)
        return 1
    print(f"\nBuilt in {time.monotonic() - started:.0f}s:")
    subprocess.run(["docker", "image", "ls", "--format", "  {{.Repository}}:{{.Tag}}  {{.Size}}", "log-pipeline/*"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
