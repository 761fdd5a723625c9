"""A stand-in for MinIO's client `mc` (image minio/mc, and inside minio/minio), for where those
images cannot be pulled: the commands docker-compose.yml runs, done with boto3 against the
S3-compatible server on the alias's URL.

    mc ready ALIAS                              exit 0 once the server answers (health checks)
    mc alias set ALIAS URL ACCESS_KEY SECRET    remember a server and its credentials
    mc mb [--ignore-existing] ALIAS/BUCKET      create a bucket
    mc anonymous set-json FILE ALIAS/BUCKET     set the bucket's policy from a JSON file

Aliases are kept in ~/.mc/config.json as mc keeps them; `local` is http://localhost:9000 until
set, as in mc's own default configuration. Any other command fails and says so.
"""

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CONFIG = Path.home() / ".mc" / "config.json"
DEFAULT_ALIASES: dict[str, dict[str, str]] = {
    "local": {"url": "http://localhost:9000", "accessKey": "", "secretKey": ""}
}


def aliases() -> dict[str, dict[str, str]]:
    if not CONFIG.exists():
        return dict(DEFAULT_ALIASES)
    found: dict[str, dict[str, str]] = json.loads(CONFIG.read_text())["aliases"]
    return found


def alias_of(name: str) -> dict[str, str]:
    known = aliases()
    if name not in known:
        raise SystemExit(f"mc: no alias {name!r} (mc alias set {name} URL KEY SECRET)")
    return known[name]


def s3_client(alias: dict[str, str]) -> "S3Client":
    return boto3.session.Session(
        aws_access_key_id=alias["accessKey"],
        aws_secret_access_key=alias["secretKey"],
        region_name="us-east-1",
    ).client(
        "s3",
        endpoint_url=alias["url"],
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def target(path: str) -> tuple["S3Client", str]:
    """The client and bucket of `ALIAS/BUCKET`."""
    name, _, bucket = path.partition("/")
    if not bucket.strip("/"):
        raise SystemExit(f"mc: {path!r} names no bucket (ALIAS/BUCKET)")
    return s3_client(alias_of(name)), bucket.strip("/")


def ready(args: argparse.Namespace) -> None:
    try:
        urllib.request.urlopen(alias_of(args.alias)["url"], timeout=4).close()
    except urllib.error.HTTPError:
        pass  # an S3 error document is an answer
    except OSError as error:
        raise SystemExit(f"mc: {args.alias} is not ready: {error}") from None


def alias_set(args: argparse.Namespace) -> None:
    known = aliases()
    known[args.alias] = {
        "url": args.url.rstrip("/"),
        "accessKey": args.access_key,
        "secretKey": args.secret_key,
        "api": "s3v4",
        "path": "auto",
    }
    CONFIG.parent.mkdir(parents=True, exist_ok=True)
    CONFIG.write_text(json.dumps({"version": "10", "aliases": known}, indent=2))
    print(f"Added `{args.alias}` successfully.")


def make_bucket(args: argparse.Namespace) -> None:
    client, bucket = target(args.target)
    try:
        client.create_bucket(Bucket=bucket)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if not (
            args.ignore_existing and code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists")
        ):
            raise
    print(f"Bucket created successfully `{args.target}`.")


def anonymous_set_json(args: argparse.Namespace) -> None:
    client, bucket = target(args.target)
    policy = Path(args.policy).read_text()
    json.loads(policy)  # refuses what is not JSON before the server sees it
    client.put_bucket_policy(Bucket=bucket, Policy=policy)
    print(f"Access permission for `{args.target}` is set from `{args.policy}`")


def parser() -> argparse.ArgumentParser:
    mc = argparse.ArgumentParser(prog="mc", description="Stand-in for MinIO's client.")
    commands = mc.add_subparsers(required=True)
    command = commands.add_parser("ready")
    command.add_argument("alias")
    command.set_defaults(run=ready)
    alias = commands.add_parser("alias").add_subparsers(required=True)
    command = alias.add_parser("set")
    for name in ("alias", "url", "access_key", "secret_key"):
        command.add_argument(name)
    command.set_defaults(run=alias_set)
    command = commands.add_parser("mb")
    command.add_argument("--ignore-existing", "-p", action="store_true")
    command.add_argument("target")
    command.set_defaults(run=make_bucket)
    anonymous = commands.add_parser("anonymous").add_subparsers(required=True)
    command = anonymous.add_parser("set-json")
    command.add_argument("policy")
    command.add_argument("target")
    command.set_defaults(run=anonymous_set_json)
    return mc


def main(argv: list[str]) -> None:
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except (BotoCoreError, ClientError) as error:
        raise SystemExit(f"mc: {error}") from None


if __name__ == "__main__":
    main(sys.argv[1:])
