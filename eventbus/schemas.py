"""Write the published JSON Schemas: ``python -m eventbus.schemas [DIR]`` (default ``docs/schema``)."""

import sys
from pathlib import Path

import orjson

from eventbus._contract import SCHEMA_FILES, json_schemas


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0] if args else "docs/schema")
    folder.mkdir(parents=True, exist_ok=True)
    for name, schema in json_schemas().items():
        path = folder / SCHEMA_FILES[name]
        path.write_bytes(orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
