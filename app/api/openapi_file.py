"""The OpenAPI document as a file: `clients/openapi.json`, which the SDKs are generated from.

    python -m app.api.openapi_file --write clients/openapi.json   # after changing the API
    python -m app.api.openapi_file --check clients/openapi.json   # exit 1 when it is stale

tests/clients check that the committed file is the API's document, and that the SDKs'
generated code is what their generators make of it.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI


def document_text(document: dict[str, Any]) -> str:
    """The document as the file holds it: indented JSON, keys in the API's order."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def api_document(application: FastAPI | None = None) -> dict[str, Any]:
    if application is None:
        from app.main import create_app

        application = create_app()
    return application.openapi()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", type=Path, metavar="FILE")
    mode.add_argument("--check", type=Path, metavar="FILE")
    args = parser.parse_args(argv)
    text = document_text(api_document())
    if args.write is not None:
        args.write.write_text(text, encoding="utf-8")
        return 0
    if args.check.read_text(encoding="utf-8") != text:
        sys.stderr.write(f"{args.check} is stale: run python -m app.api.openapi_file --write\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
