"""docs/RUNPOD_API_INTEGRATION.md shows the clients as they are: its TypeScript examples type-check
against the package (`@podrelay/client`, as installed), its Python examples import what the
Python client has, and its webhook check accepts Podrelay's signatures and nothing else."""

import ast
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from app.notify.signing import new_secret, signed_headers
from tests.clients.sdk import TYPESCRIPT, installed_npm, run
from tests.docs.helpers import DOCS, block_after, code_blocks

INTEGRATION = DOCS / "RUNPOD_API_INTEGRATION.md"
_TSCONFIG = {
    "compilerOptions": {
        "target": "ES2022",
        "lib": ["ES2022", "DOM", "DOM.Iterable"],
        "module": "NodeNext",
        "moduleResolution": "NodeNext",
        "jsx": "react-jsx",
        "strict": True,
        "noEmit": True,
        "skipLibCheck": True,
        "types": ["node"],
    },
    "include": ["*.ts", "*.tsx"],
}


def blocks_after(text: str, marker: str) -> list[str]:
    """Every first fenced block after an HTML comment `<!-- marker -->`."""
    parts = text.split(f"<!-- {marker} -->")[1:]
    return [code_blocks(part)[0] for part in parts]


def test_typescript_examples_type_check_against_the_package() -> None:
    """In a folder inside the package, so `@podrelay/client` is the package itself (by its
    exports, as an app that installed it sees it) and React's types are its dev dependency."""
    installed_npm()
    examples = blocks_after(INTEGRATION.read_text(), "test: ts-example")
    assert len(examples) >= 3
    folder = TYPESCRIPT / ".docs-check"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    try:
        (folder / "tsconfig.json").write_text(json.dumps(_TSCONFIG))
        for index, example in enumerate(examples):
            suffix = "tsx" if "return <" in example else "ts"
            (folder / f"example{index}.{suffix}").write_text(example)
        tsc = TYPESCRIPT / "node_modules" / "typescript" / "bin" / "tsc"
        checked = run(["node", str(tsc), "--project", str(folder / "tsconfig.json")], TYPESCRIPT)
        assert checked.returncode == 0, checked.stdout[-4000:]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_python_examples_use_what_the_client_has() -> None:
    for code in blocks_after(INTEGRATION.read_text(), "test: python-example"):
        tree = ast.parse(code)
        imports: list[ast.stmt] = [
            node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)
        ]
        assert imports
        exec(compile(ast.Module(imports, []), "RUNPOD_API_INTEGRATION.md", "exec"), {})


BODY = json.dumps({"type": "job.completed", "data": {"id": "job_1", "prompt": "ünïcode"}}).encode()


@pytest.mark.parametrize(
    "secret", [new_secret(), "whsec_" + "Qk3x-older_" * 4], ids=["standard", "older"]
)
def test_the_documented_webhook_check_accepts_podrelays_signatures_only(secret: str) -> None:
    code = block_after(INTEGRATION.read_text(), "test: webhook-verify-python")
    namespace: dict[str, Any] = {}
    exec(compile(code, "RUNPOD_API_INTEGRATION.md", "exec"), namespace)
    receive = namespace["receive"]
    now = int(time.time())
    good = signed_headers(secret, "msg_docs1", now, BODY)
    assert receive(good, BODY, secret) == json.loads(BODY)
    assert receive({k.title(): v for k, v in good.items()}, BODY, secret) == json.loads(BODY)
    for headers, body in (
        (good, BODY.replace(b"job_1", b"job_2")),
        (signed_headers(new_secret(), "msg_docs1", now, BODY), BODY),
        ({**good, "webhook-id": "msg_docs2"}, BODY),
        (signed_headers(secret, "msg_docs1", now - 600, BODY), BODY),
    ):
        assert receive(headers, body, secret) is None


def test_the_doc_names_no_file_that_is_gone() -> None:
    text = INTEGRATION.read_text()
    assert "docs/clients" not in text
    for target in ("../clients/openapi.json", "../clients/typescript", "../clients/python"):
        assert target in text
        assert (INTEGRATION.parent / target).exists(), target
    assert not Path(DOCS / "clients").exists()
