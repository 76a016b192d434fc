"""Who may import whom (docs/architecture.md), checked on the source: a forbidden import fails this test.

Every ``import`` and ``from ... import`` in the repository's Python files (function-level ones too) is read
with ``ast``; only absolute imports name another package (relative ones stay inside their own).
"""

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SERVICES = {
    "ml_service": REPO / "fastapi-ml-service",
    "anomaly_processor": REPO / "processor",
    "log_simulator": REPO / "log-simulator",
    "local_kafka": REPO / "kafka-docker",
}
SHARED = {"eventbus": REPO / "eventbus", "streaming_detector": REPO / "streaming_detector"}
TOOLS = {
    "evaluation": REPO / "evaluation",
    "devstack": REPO / "devstack",
    "benchmarks": REPO / "benchmarks",
    "scripts": REPO / "scripts",
}
WEB_LIBRARIES = {"fastapi", "starlette", "uvicorn", "requests", "httpx", "urllib3", "aiohttp"}
KAFKA_LIBRARIES = {"kafka", "confluent_kafka", "aiokafka"}

# Importer -> top-level names it must not import.
FORBIDDEN: dict[str, set[str]] = {
    "eventbus": {*SERVICES, "streaming_detector", *TOOLS, "tests"},
    "streaming_detector": {*SERVICES, *TOOLS, "tests", *WEB_LIBRARIES, *KAFKA_LIBRARIES},
    **{service: {*(SERVICES.keys() - {service}), *TOOLS, "tests"} for service in SERVICES},
    "evaluation": {*SERVICES, "devstack", "benchmarks", "scripts", "tests"},
    "devstack": {"benchmarks", "evaluation", "scripts", "tests"},
    "benchmarks": {"tests"},
    "scripts": {"tests"},
}


def owner(path: Path) -> str | None:
    """The package (or tool folder) a file belongs to; a service folder's main.py shims count as the service."""
    for name, folder in {**SERVICES, **SHARED, **TOOLS}.items():
        if folder in path.parents:
            return name
    return None


def imported_names(path: Path) -> Iterator[tuple[int, str]]:
    """(line, top-level module) of every absolute import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".")[0]


def source_files() -> Iterator[Path]:
    skipped = {".venv", ".venv-peers", ".git", "tests", "libs", ".local", ".run", "node_modules"}
    for path in sorted(REPO.rglob("*.py")):
        if not skipped.intersection(path.relative_to(REPO).parts):
            yield path


def violations() -> list[str]:
    found = []
    for path in source_files():
        importer = owner(path)
        if importer is None:
            continue
        for line, name in imported_names(path):
            if name in FORBIDDEN.get(importer, set()):
                found.append(f"{path.relative_to(REPO)}:{line}: {importer} imports {name}")
    return found


def test_every_source_file_belongs_to_a_known_package() -> None:
    strays = [str(p.relative_to(REPO)) for p in source_files() if owner(p) is None]
    assert strays == [], "add the folder to docs/architecture.md and to this test's map"


def test_no_package_imports_what_the_architecture_forbids() -> None:
    found = violations()
    assert not found, "forbidden imports (see docs/architecture.md):\n" + "\n".join(found)


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The reader finds imports at any depth, in both forms, and skips relative ones."""
    module = tmp_path / "m.py"
    module.write_text("import os\ndef f():\n    from kafka.errors import KafkaError\nfrom . import sibling\n")
    assert list(imported_names(module)) == [(1, "os"), (3, "kafka")]
