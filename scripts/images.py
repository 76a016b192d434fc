"""Build the container images without any container registry: ``python scripts/images.py``.

1. Base images, unless given (``--python-base``, ``--java-base``, e.g. ``python:3.11-slim`` where a registry
   is reachable): a Debian root filesystem made by ``debootstrap`` from Debian's packages, then ``docker
   import``. The Debian mirror is ``DEBIAN_MIRROR``, else the one this host's apt uses.
2. The project's wheels and its dependencies', resolved on this host with pip (so the image's Python
   must be this interpreter's version).
3. Kafka's jars from Maven Central (``kafka-docker/pom.xml``), the same as the local broker's.
4. ``docker build``: log-pipeline/ml-service, log-pipeline/processor, log-pipeline/simulator, log-pipeline/kafka.

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
from pathlib import Path

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
    """The broker image's build context: the jars, the entry point and its logging configuration."""
    sys.path.insert(0, str(REPO / "kafka-docker"))
    from local_kafka.broker import LIBS_DIR, ensure_jars

    ensure_jars()
    context = BUILD / "kafka"
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    shutil.copytree(LIBS_DIR, context / "libs")
    for name in ("kafka.Dockerfile", "kafka-entrypoint.sh", "log4j2.yaml"):
        shutil.copy2(STAGING / name, context / ("Dockerfile" if name == "kafka.Dockerfile" else name))
    return context


def python_version(image: str) -> str:
    out = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "python3", image, "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python-base", help=f"base of the Python images (default: {PYTHON_BASE}, built here)")
    parser.add_argument("--java-base", help=f"base of the broker image (default: {JAVA_BASE}, built here)")
    parser.add_argument("--tag", default="latest")
    parser.add_argument("--only", choices=["python", "kafka"], help="build only these images")
    options = parser.parse_args(argv)
    started = time.monotonic()
    built: list[str] = []
    try:
        if shutil.which("docker") is None:
            raise BuildError("docker is not installed")
        if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
            raise BuildError("the Docker engine does not answer (`docker info` fails): start dockerd")
        if options.only != "kafka":
            base = options.python_base or PYTHON_BASE
            if not options.python_base and not image_exists(PYTHON_BASE):
                build_base(PYTHON_BASE)
            here = str(sys.version_info[:2])
            if python_version(base) != here:
                raise BuildError(f"{base} runs Python {python_version(base)}, but the wheels are for {here}")
            context = stage_python()
            for target in SERVICES:
                name = f"log-pipeline/{target}:{options.tag}"
                run(
                    ["docker", "build", "-q", "--target", target, "--build-arg", f"BASE_IMAGE={base}"]
                    + ["-t", name, str(context)]
                )
                built.append(name)
        if options.only != "python":
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
