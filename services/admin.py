"""`llmchatlinker keys create|list|revoke`: caller keys, through the front door with an admin key, or
straight on user_unit with the internal token (`--direct`: how the first admin key is made).

`create` prints the key alone on stdout (shown this once; the suite keeps its SHA-256 only) and
what it is on stderr; `list` prints one key a line; the exit status is 0, or the gRPC status code
of the failure, whose message goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

import grpc

from llmchatlinker.client import settings as client_settings
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2_grpc as pb_grpc
from llmchatlinker.user.v1 import user_service_pb2 as user_pb2
from llmchatlinker.user.v1 import user_service_pb2_grpc as user_grpc
from services.common import config, keys
from services.common.admission import call_metadata, channel_credentials
from services.common.errors import error_info

PROG = "llmchatlinker keys"
DEFAULT_USER_UNIT_ADDR = "127.0.0.1:50052"
TIMEOUT_SECONDS = 15
EXAMPLE = """examples:
  llmchatlinker keys create --role admin --name ops --direct   # the first admin key, beside the units
  export LLMCHATLINKER_API_KEY=lcl_...                          # an admin key, for the front door
  llmchatlinker keys create --role app --name web-backend
  llmchatlinker keys create --role user --user-id <user_id> --name ada-phone
  llmchatlinker keys list
  llmchatlinker keys revoke key_0123456789abcdef"""


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "keys", help="make, list and revoke caller keys", description=__doc__.split("\n\n", 1)[1],
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="make a key and print it (shown once)")
    create.add_argument("--role", required=True, choices=keys.ROLES)
    create.add_argument("--user-id", default="", help="the user a user key acts for")
    create.add_argument("--name", default="", help="a label, at most 100 characters")
    actions.add_parser("list", help="the keys not revoked, oldest first")
    revoke = actions.add_parser("revoke", help="revoke a key: every replica refuses it within a second")
    revoke.add_argument("key_id")
    for action in actions.choices.values():
        action.add_argument("--direct", action="store_true",
                            help="call user_unit ($LLMCHATLINKER_USER_UNIT_ADDR, default 127.0.0.1:50052) with "
                                 "$LLMCHATLINKER_INTERNAL_TOKEN instead of the front door with $LLMCHATLINKER_API_KEY")
        action.add_argument("--address", help="the front door, or with --direct user_unit")


def run(args: argparse.Namespace, stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr) -> int:
    try:
        with _Keys(args) as admin:
            if args.action == "create":
                key, api_key = admin.create(args.role, args.user_id, args.name)
                print(api_key, file=stdout)
                print(f"{PROG}: made {key.key_id} (role {key.role}{', user ' + key.user_id if key.user_id else ''}); "
                      "the key above is shown this once", file=stderr)
            elif args.action == "list":
                for key in admin.list():
                    print("\t".join([key.key_id, key.role, key.user_id or "-", key.shown_part + "...",
                                     key.create_time.ToDatetime().isoformat(timespec="seconds") + "Z", key.name]),
                          file=stdout)
            else:
                admin.revoke(args.key_id)
                print(f"{PROG}: revoked {args.key_id}", file=stderr)
    except grpc.RpcError as error:
        info = error_info(error)
        print(f"{PROG}: {error.code().name}: {error.details()}{f' ({info.reason})' if info else ''}", file=stderr)
        return error.code().value[0]
    except config.SettingError as error:
        print(f"{PROG}: {error}", file=stderr)
        return 2
    return 0


class _Keys:
    """The key calls on one channel: the front door's admin RPCs, or user_unit's own."""

    def __init__(self, args: argparse.Namespace):
        self._direct = args.direct
        if self._direct:
            address = args.address or config.optional("USER_UNIT_ADDR", DEFAULT_USER_UNIT_ADDR)
            token, tls = config.internal_token(), config.unit_tls()
            self._metadata = call_metadata(token) if token else ()
            self._channel = (grpc.secure_channel(address, channel_credentials(tls)) if tls
                             else grpc.insecure_channel(address))
            self._users = user_grpc.UserServiceStub(self._channel)
        else:
            self._metadata = client_settings.key_metadata(client_settings.api_key())
            self._channel = grpc.insecure_channel(client_settings.address(args.address))
            self._front = pb_grpc.OrchestratorServiceStub(self._channel)

    def create(self, role: str, user_id: str, name: str):
        if not self._direct:
            made = self._front.CreateKey(pb.CreateKeyRequest(role=role, user_id=user_id, name=name),
                                         metadata=self._metadata, timeout=TIMEOUT_SECONDS)
            return made.key, made.api_key
        api_key, key_id = keys.new_key(), keys.new_key_id()
        made = self._users.CreateKey(user_pb2.CreateKeyRequest(
            request_id=f"create-key:{key_id}", key_id=key_id, key_hash=keys.key_hash(api_key), role=role,
            user_id=user_id, name=name, shown_part=keys.shown_part(api_key)),
            metadata=self._metadata, timeout=TIMEOUT_SECONDS)
        return made.key, api_key

    def list(self):
        token = None
        while token != "":
            if self._direct:
                page = self._users.ListKeys(user_pb2.ListKeysRequest(page_size=1000, page_token=token or ""),
                                            metadata=self._metadata, timeout=TIMEOUT_SECONDS)
            else:
                page = self._front.ListKeys(pb.ListKeysRequest(page_size=1000, page_token=token or ""),
                                            metadata=self._metadata, timeout=TIMEOUT_SECONDS)
            yield from page.keys
            token = page.next_page_token

    def revoke(self, key_id: str) -> None:
        if self._direct:
            self._users.RevokeKey(user_pb2.RevokeKeyRequest(request_id=f"revoke-key:{key_id}", key_id=key_id),
                                  metadata=self._metadata, timeout=TIMEOUT_SECONDS)
        else:
            self._front.RevokeKey(pb.RevokeKeyRequest(key_id=key_id), metadata=self._metadata,
                                  timeout=TIMEOUT_SECONDS)

    def __enter__(self) -> "_Keys":
        return self

    def __exit__(self, *exc_info) -> None:
        self._channel.close()
